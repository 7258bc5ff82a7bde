"""Docker token scopes (`repository:team/app:pull,push`) and the access a token grants for them.

Grammar from the Docker registry token-scope specification: `type[(class)]:name:action[,action]*`, several scopes
separated by spaces (one `scope` parameter) or given as repeated parameters. The name may itself hold colons (a
`host:port/` prefix), so the type ends at the first colon and the actions start after the last one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

PULL, PUSH, DELETE = "pull", "push", "delete"
ALL = "*"
REPOSITORY_ACTIONS = (PULL, PUSH, DELETE)

RESOURCE_TYPE = re.compile(r"^[a-z0-9]+(?:\([a-z0-9]+\))?$")
ACTION = re.compile(r"^(?:[a-z_]+|\*)$")
# Distribution's repository-name grammar (reference.NameRegexp without the domain part).
PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|[-]*)[a-z0-9]+)*"
REPOSITORY_NAME = re.compile(rf"^{PATH_COMPONENT}(?:/{PATH_COMPONENT})*$")
MAX_NAME_LENGTH = 255
MAX_SCOPES = 32


class ScopeError(ValueError):
    """A scope that does not follow the grammar; the message quotes (a bounded part of) it."""


@dataclass(frozen=True)
class Scope:
    type: str
    name: str
    actions: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.type}:{self.name}:{','.join(self.actions)}"


def parse(values: list[str]) -> list[Scope]:
    """Every scope in the given parameter values (each may hold several, space-separated); [] for none."""
    scopes = [parse_one(part) for value in values for part in value.split()]
    if len(scopes) > MAX_SCOPES:
        raise ScopeError(f"At most {MAX_SCOPES} scopes may be requested at once.")
    return scopes


def parse_one(text: str) -> Scope:
    shown = text[:200]
    resource_type, sep, rest = text.partition(":")
    name, sep2, actions = rest.rpartition(":")
    if not sep or not sep2 or not name:
        raise ScopeError(f"The scope '{shown}' is malformed: expected 'type:name:action[,action]'.")
    if not RESOURCE_TYPE.match(resource_type):
        raise ScopeError(f"The scope '{shown}' has an invalid resource type '{resource_type[:64]}'.")
    action_list = tuple(a for a in actions.split(","))
    if not actions or not all(ACTION.match(a) for a in action_list):
        raise ScopeError(f"The scope '{shown}' has invalid actions: expected a comma-separated list such as "
                         "'pull,push'.")
    if resource_type.startswith("repository") and (len(name) > MAX_NAME_LENGTH or not REPOSITORY_NAME.match(name)):
        raise ScopeError(f"The scope '{shown}' names an invalid repository: repository names are lower-case "
                         "path components of letters, digits and separators ('.', '_', '__', '-'), joined by '/'.")
    return Scope(resource_type, name, tuple(dict.fromkeys(action_list)))


def grant(scope: Scope, rights: frozenset[str]) -> dict:
    """The token's `access` entry for one requested scope: the requested actions the rights allow (maybe none).

    `rights` is a subset of pull/push/delete on the registry. `*` is granted only to whoever holds all three, and
    otherwise narrows to what they do hold; the catalog (`registry:catalog:*`) is open to whoever may pull.
    """
    granted: list[str] = []
    if scope.type in ("repository", "repository(plugin)"):
        for action in scope.actions:
            if action == ALL:
                granted += [ALL] if rights >= set(REPOSITORY_ACTIONS) else [a for a in REPOSITORY_ACTIONS
                                                                            if a in rights]
            elif action in REPOSITORY_ACTIONS and action in rights:
                granted.append(action)
    elif scope.type == "registry" and scope.name == "catalog" and PULL in rights:
        granted = [a for a in scope.actions if a == ALL]
    return {"type": scope.type, "name": scope.name, "actions": list(dict.fromkeys(granted))}
