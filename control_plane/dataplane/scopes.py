"""Docker token scopes (`repository:team/app:pull,push`) and the access a token grants for them.

Grammar from the Docker registry token-scope specification: `type[(class)]:name:action[,action]*`, several scopes
separated by spaces (one `scope` parameter) or given as repeated parameters. The name may itself hold colons (a
`host:port/` prefix), so the type ends at the first colon and the actions start after the last one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

PULL, PUSH, DELETE = "pull", "push", "delete"
METADATA_READ, METADATA_WRITE = "metadata_read", "metadata_write"
ALL = "*"
# A caller's rights on a registry (what its roles or the admin user give): a subset of these three.
RIGHTS = (PULL, PUSH, DELETE)
# Token actions on a repository, and the right each needs (ACR: metadata/read comes with pull, metadata/write with
# push). The catalog (`registry:catalog:*`) comes with pull.
REPOSITORY_ACTIONS = (PULL, PUSH, DELETE, METADATA_READ, METADATA_WRITE)
NEEDED_RIGHT = {PULL: PULL, METADATA_READ: PULL, PUSH: PUSH, METADATA_WRITE: PUSH, DELETE: DELETE}
REPOSITORY_TYPES = ("repository", "repository(plugin)")
CATALOG = "catalog"

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


def allowed_actions(scope_type: str, name: str, rights: frozenset[str]) -> tuple[str, ...]:
    """Every action a caller with these rights may take on (scope_type, name), `*` when it may take all."""
    if scope_type in REPOSITORY_TYPES:
        held = tuple(a for a in REPOSITORY_ACTIONS if NEEDED_RIGHT[a] in rights)
        return (ALL, *held) if rights >= set(RIGHTS) else held
    if scope_type == "registry" and name == CATALOG and PULL in rights:
        return (ALL,)
    return ()


def grant(scope: Scope, rights: frozenset[str], name: str | None = None) -> dict:
    """The token's `access` entry for one requested scope: the requested actions the rights allow (maybe none).

    `rights` is a subset of pull/push/delete on the registry. `*` is granted only to whoever holds all three, and
    otherwise narrows to what they do hold; the catalog (`registry:catalog:*`) is open to whoever may pull.
    `name` is the name the rights are looked up under when it differs from the scope's (path style: the scope's
    name without its registry segment).
    """
    allowed = allowed_actions(scope.type, scope.name if name is None else name, rights)
    granted: list[str] = []
    for action in scope.actions:
        if action == ALL and scope.type in REPOSITORY_TYPES and ALL not in allowed:
            granted += [a for a in allowed if a in RIGHTS]
        elif action in allowed:
            granted.append(action)
    return {"type": scope.type, "name": scope.name, "actions": list(dict.fromkeys(granted))}


def covers(access: list[dict], scope_type: str, name: str, action: str) -> bool:
    """Whether a verified token's `access` list grants `action` on (scope_type, name)."""
    for entry in access:
        if entry.get("type") == scope_type and entry.get("name") == name:
            actions = entry.get("actions") or ()
            if action in actions or ALL in actions:
                return True
    return False
