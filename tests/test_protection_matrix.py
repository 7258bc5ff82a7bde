"""The protection matrix: every built-in role, at every scope, through every ARM operation, with the real SDKs.

Each cell is one service principal holding one role at one scope (or no role at all). It drives every registry,
resource-group and role-assignment operation and must be allowed, or refused with 403 `AuthorizationFailed`,
exactly as `EXPECTED` says. `EXPECTED` is written out by hand from Azure's semantics (the built-in roles'
actions and notActions, and the action and scope each ARM operation needs), not computed from the code under
test, so a wrong role, a wrong declared action or a wrong scope check shows up as a named cell and operation.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.core.rest import HttpRequest
from azure.identity import ClientSecretCredential
from azure.mgmt.authorization import AuthorizationManagementClient
from azure.mgmt.authorization.v2022_04_01.models import RoleAssignmentCreateParameters
from azure.mgmt.containerregistry import ContainerRegistryManagementClient
from azure.mgmt.containerregistry.models import (
    RegenerateCredentialParameters,
    Registry,
    RegistryNameCheckRequest,
    RegistryUpdateParameters,
    Sku,
)
from azure.mgmt.core.exceptions import ARMErrorFormat
from azure.mgmt.resource.resources import ResourceManagementClient

from tests.conftest import client_kwargs

ROLE_IDS = {
    "Owner": "8e3af657-a8ff-443c-a75c-2fe8c4bcb635",
    "Contributor": "b24988ac-6180-42a0-ab88-20f7382dd24c",
    "Reader": "acdd72a7-3385-48ef-bd42-f606fba81ae7",
    "AcrPush": "8311e382-0749-4cb8-b61a-304f252e45ec",
    "AcrPull": "7f951dda-4ed3-4680-a7ca-43fe172d538d",
    "AcrDelete": "c2f4ef07-c644-48eb-af81-4b1b4947fb11",
}
ROLES = ("Owner", "Contributor", "Reader", "AcrPush", "AcrPull")
# subscription; the group holding the target registry; the target registry; a different group (and its registry)
SCOPES = ("subscription", "group", "registry", "other")
CELLS = [f"{role}-{scope}" for role in ROLES for scope in SCOPES] + ["none"]

ACR = "Microsoft.ContainerRegistry"
GROUPS = "Microsoft.Resources/subscriptions/resourceGroups"

# Y: allowed.  .: 403 AuthorizationFailed.  Lists answer with which of the two known items they show:
# T the target (registry, or its group), O the other group's, TO both, 0 neither (an empty answer, not a 403).
# Scopes: s = subscription, g = the target's group, r = the target registry, o = the other group.
EXPECTED_GRID = """
#                                     Owner      Contributor      Reader       AcrPush       AcrPull     none
#                                  s  g  r  o    s  g  r  o    s  g  r  o    s  g  r  o    s  g  r  o    -
operations.list                    Y  Y  Y  Y    Y  Y  Y  Y    Y  Y  Y  Y    Y  Y  Y  Y    Y  Y  Y  Y    Y
registries.check_name_availability Y  .  .  .    Y  .  .  .    Y  .  .  .    .  .  .  .    .  .  .  .    .
registries.get                     Y  Y  Y  .    Y  Y  Y  .    Y  Y  Y  .    .  .  .  .    .  .  .  .    .
registries.get_other               Y  .  .  Y    Y  .  .  Y    Y  .  .  Y    .  .  .  .    .  .  .  .    .
registries.list                    TO T  T  O    TO T  T  O    TO T  T  O    .  .  .  .    .  .  .  .    .
registries.list_by_resource_group  T  T  T  .    T  T  T  .    T  T  T  .    .  .  .  .    .  .  .  .    .
registries.begin_create            Y  Y  .  .    Y  Y  .  .    .  .  .  .    .  .  .  .    .  .  .  .    .
registries.begin_update            Y  Y  Y  .    Y  Y  Y  .    .  .  .  .    .  .  .  .    .  .  .  .    .
registries.list_credentials        Y  Y  Y  .    Y  Y  Y  .    .  .  .  .    .  .  .  .    .  .  .  .    .
registries.regenerate_credential   Y  Y  Y  .    Y  Y  Y  .    .  .  .  .    .  .  .  .    .  .  .  .    .
registries.list_usages             Y  Y  Y  .    Y  Y  Y  .    Y  Y  Y  .    .  .  .  .    .  .  .  .    .
registries.begin_delete            Y  Y  .  .    Y  Y  .  .    .  .  .  .    .  .  .  .    .  .  .  .    .
resource_groups.get                Y  Y  .  .    Y  Y  .  .    Y  Y  .  .    .  .  .  .    .  .  .  .    .
resource_groups.check_existence    Y  Y  .  .    Y  Y  .  .    Y  Y  .  .    .  .  .  .    .  .  .  .    .
resource_groups.list               TO T  0  O    TO T  0  O    TO T  0  O    .  .  .  .    .  .  .  .    .
resource_groups.create_or_update   Y  .  .  .    Y  .  .  .    .  .  .  .    .  .  .  .    .  .  .  .    .
resource_groups.put_existing       Y  Y  .  .    Y  Y  .  .    .  .  .  .    .  .  .  .    .  .  .  .    .
resource_groups.update             Y  Y  .  .    Y  Y  .  .    .  .  .  .    .  .  .  .    .  .  .  .    .
resource_groups.begin_delete       Y  .  .  .    Y  .  .  .    .  .  .  .    .  .  .  .    .  .  .  .    .
resources.list                     TO T  T  O    TO T  T  O    TO T  T  O    .  .  .  .    .  .  .  .    .
role_assignments.create            Y  Y  Y  .    .  .  .  .    .  .  .  .    .  .  .  .    .  .  .  .    .
role_assignments.create_on_group   Y  Y  .  .    .  .  .  .    .  .  .  .    .  .  .  .    .  .  .  .    .
role_assignments.get               Y  Y  Y  .    Y  Y  Y  .    Y  Y  Y  .    .  .  .  .    .  .  .  .    .
role_assignments.list_for_scope    Y  Y  Y  .    Y  Y  Y  .    Y  Y  Y  .    .  .  .  .    .  .  .  .    .
role_assignments.delete            Y  Y  Y  .    .  .  .  .    .  .  .  .    .  .  .  .    .  .  .  .    .
role_definitions.list              Y  Y  Y  .    Y  Y  Y  .    Y  Y  Y  .    .  .  .  .    .  .  .  .    .
role_definitions.get               Y  Y  Y  .    Y  Y  Y  .    Y  Y  Y  .    .  .  .  .    .  .  .  .    .
locks.create                       Y  Y  Y  .    .  .  .  .    .  .  .  .    .  .  .  .    .  .  .  .    .
locks.create_on_group              Y  Y  .  .    .  .  .  .    .  .  .  .    .  .  .  .    .  .  .  .    .
locks.get                          Y  Y  Y  .    Y  Y  Y  .    Y  Y  Y  .    .  .  .  .    .  .  .  .    .
locks.list_for_scope               Y  Y  Y  .    Y  Y  Y  .    Y  Y  Y  .    .  .  .  .    .  .  .  .    .
locks.delete                       Y  Y  Y  .    .  .  .  .    .  .  .  .    .  .  .  .    .  .  .  .    .
"""


def parse_grid(grid: str) -> dict[str, dict[str, str]]:
    """{operation: {cell: expected}} from the table above."""
    table = {}
    for line in grid.strip().splitlines():
        if line.startswith("#"):
            continue
        operation, *values = line.split()
        assert len(values) == len(CELLS), f"{operation}: {len(values)} columns, want {len(CELLS)}"
        table[operation] = dict(zip(CELLS, values, strict=True))
    return table


EXPECTED = parse_grid(EXPECTED_GRID)


def registry_id(subscription_id: str, group: str, name: str) -> str:
    return f"/subscriptions/{subscription_id}/resourceGroups/{group}/providers/{ACR}/registries/{name}"


def group_id(subscription_id: str, group: str) -> str:
    return f"/subscriptions/{subscription_id}/resourceGroups/{group}"


def hexid(n: int = 10) -> str:
    return uuid.uuid4().hex[:n]


@dataclass
class Principal:
    client_name: str  # how Azure's 403 names the caller: an application's appId, a user's UPN
    object_id: str
    acr: ContainerRegistryManagementClient
    rmc: ResourceManagementClient
    auth: AuthorizationManagementClient


class World:
    """The owner's fixtures every cell acts on: a target group and registry, another group and registry, a
    bystander principal to (un)assign roles to, and victims to delete that are replaced once a cell deletes them."""

    def __init__(self, service, acr, rmc, credential):
        self.service = service
        self.sub = service.subscription_id
        self.acr, self.rmc = acr, rmc
        self.auth = AuthorizationManagementClient(credential, self.sub, **client_kwargs(service))
        tag = hexid(6)
        self.target_group, self.other_group = f"pm-target-{tag}", f"pm-other-{tag}"
        self.target, self.other = f"pmtarget{tag}", f"pmother{tag}"
        for group in (self.target_group, self.other_group):
            rmc.resource_groups.create_or_update(group, {"location": "eastus", "tags": {"purpose": "matrix"}})
        self.create_registry(self.target_group, self.target, admin_user_enabled=True)
        self.create_registry(self.other_group, self.other, admin_user_enabled=True)
        self.bystander = service.cli_json("sp", "create", "--name", f"pm-bystander-{tag}")["id"]
        self.readable_assignment = self.assign(self.target_scope, "AcrPush", self.bystander)
        self._victim_registry: str | None = None
        self._victim_group: str | None = None
        self.extra_groups: list[str] = []

    # scopes -----------------------------------------------------------------------------------------------
    @property
    def target_scope(self) -> str:
        return registry_id(self.sub, self.target_group, self.target)

    def scope_of(self, scope: str) -> str:
        return {"subscription": f"/subscriptions/{self.sub}",
                "group": group_id(self.sub, self.target_group),
                "registry": self.target_scope,
                "other": group_id(self.sub, self.other_group)}[scope]

    # owner-side helpers -----------------------------------------------------------------------------------
    def create_registry(self, group: str, name: str, **kwargs) -> None:
        self.acr.registries.begin_create(group, name, Registry(location="eastus", sku=Sku(name="Basic"),
                                                               **kwargs)).result()

    def registry_exists(self, group: str, name: str) -> bool:
        try:
            self.acr.registries.get(group, name)
            return True
        except ResourceNotFoundError:
            return False

    def assign(self, scope: str, role: str, principal_id: str) -> str:
        name = str(uuid.uuid4())
        self.auth.role_assignments.create(scope, name, RoleAssignmentCreateParameters(
            role_definition_id=f"/subscriptions/{self.sub}/providers/Microsoft.Authorization/roleDefinitions/"
                               f"{ROLE_IDS[role]}",
            principal_id=principal_id, principal_type="ServicePrincipal"))
        return name

    def assignment_exists(self, scope: str, name: str) -> bool:
        try:
            self.auth.role_assignments.get(scope, name)
            return True
        except ResourceNotFoundError:
            return False

    def victim_registry(self) -> str:
        """A registry in the target group that a cell may delete (made again after one did)."""
        if self._victim_registry is None:
            name = f"pmvictim{hexid()}"
            self.create_registry(self.target_group, name)
            self._victim_registry = name
        return self._victim_registry

    def victim_registry_gone(self) -> None:
        self._victim_registry = None

    def victim_group(self) -> str:
        if self._victim_group is None:
            name = f"pm-victim-{hexid()}"
            self.rmc.resource_groups.create_or_update(name, {"location": "eastus"})
            self._victim_group = name
            self.extra_groups.append(name)
        return self._victim_group

    def victim_group_gone(self) -> None:
        self._victim_group = None

    def principal(self, label: str) -> Principal:
        sp = self.service.cli_json("sp", "create", "--name", f"pm-{label}-{hexid(6)}")
        credential = ClientSecretCredential(sp["tenant"], sp["appId"], sp["password"], authority=self.service.url,
                                            disable_instance_discovery=True, connection_verify=self.service.ca)
        kwargs = client_kwargs(self.service)
        return Principal(sp["appId"], sp["id"],
                         ContainerRegistryManagementClient(credential, self.sub, **kwargs),
                         ResourceManagementClient(credential, self.sub, **kwargs),
                         AuthorizationManagementClient(credential, self.sub, **kwargs))

    def close(self) -> None:
        for group in [self.target_group, self.other_group, *self.extra_groups]:
            if self.rmc.resource_groups.check_existence(group):
                self.rmc.resource_groups.begin_delete(group).result()


@pytest.fixture(scope="module")
def world(service, acr, rmc, credential):
    w = World(service, acr, rmc, credential)
    yield w
    w.close()


# --- the operations -------------------------------------------------------------------------------------------

@dataclass
class Attempt:
    """One call as a principal: the action and scope a refusal must name, and the owner's clean-up afterwards.

    `known` (lists only) maps T/O to the ids of the two items the expected table talks about; `after` gets
    whether the call succeeded and returns a problem (a refused write that took effect, say) or None.
    """

    call: Callable[[], Any]
    action: str
    scope: str
    known: dict[str, str] | None = None
    after: Callable[[bool], str | None] | None = None


OPERATIONS: dict[str, Callable[[World, Principal, str], Attempt]] = {}


def operation(name: str):
    def register(prepare):
        OPERATIONS[name] = prepare
        return prepare
    return register


def _registries_known(w: World) -> dict[str, str]:
    return {"T": registry_id(w.sub, w.target_group, w.target), "O": registry_id(w.sub, w.other_group, w.other)}


@operation("operations.list")
def _(w, p, cell):
    return Attempt(lambda: list(p.acr.operations.list()), f"{ACR}/operations/read", "")


@operation("registries.check_name_availability")
def _(w, p, cell):
    request = RegistryNameCheckRequest(name=f"pmfree{hexid()}", type=f"{ACR}/registries")
    return Attempt(lambda: p.acr.registries.check_name_availability(request),
                   f"{ACR}/checkNameAvailability/read", f"/subscriptions/{w.sub}")


@operation("registries.get")
def _(w, p, cell):
    return Attempt(lambda: p.acr.registries.get(w.target_group, w.target), f"{ACR}/registries/read", w.target_scope)


@operation("registries.get_other")
def _(w, p, cell):
    return Attempt(lambda: p.acr.registries.get(w.other_group, w.other), f"{ACR}/registries/read",
                   registry_id(w.sub, w.other_group, w.other))


@operation("registries.list")
def _(w, p, cell):
    return Attempt(lambda: [r.id for r in p.acr.registries.list()], f"{ACR}/registries/read",
                   f"/subscriptions/{w.sub}", _registries_known(w))


@operation("registries.list_by_resource_group")
def _(w, p, cell):
    return Attempt(lambda: [r.id for r in p.acr.registries.list_by_resource_group(w.target_group)],
                   f"{ACR}/registries/read", group_id(w.sub, w.target_group), _registries_known(w))


@operation("registries.begin_create")
def _(w, p, cell):
    name = f"pmnew{hexid()}"

    def after(succeeded):
        if succeeded:
            w.acr.registries.begin_delete(w.target_group, name).result()
        elif w.registry_exists(w.target_group, name):
            w.acr.registries.begin_delete(w.target_group, name).result()
            return "a refused create made the registry"
        return None

    return Attempt(lambda: p.acr.registries.begin_create(
        w.target_group, name, Registry(location="eastus", sku=Sku(name="Basic"))).result(),
        f"{ACR}/registries/write", registry_id(w.sub, w.target_group, name), after=after)


@operation("registries.begin_update")
def _(w, p, cell):
    return Attempt(lambda: p.acr.registries.begin_update(
        w.target_group, w.target, RegistryUpdateParameters(tags={"cell": cell})).result(),
        f"{ACR}/registries/write", w.target_scope)


@operation("registries.list_credentials")
def _(w, p, cell):
    return Attempt(lambda: p.acr.registries.list_credentials(w.target_group, w.target),
                   f"{ACR}/registries/listCredentials/action", w.target_scope)


@operation("registries.regenerate_credential")
def _(w, p, cell):
    return Attempt(lambda: p.acr.registries.regenerate_credential(
        w.target_group, w.target, RegenerateCredentialParameters(name="password2")),
        f"{ACR}/registries/regenerateCredential/action", w.target_scope)


@operation("registries.list_usages")
def _(w, p, cell):
    return Attempt(lambda: p.acr.registries.list_usages(w.target_group, w.target),
                   f"{ACR}/registries/listUsages/read", w.target_scope)


@operation("registries.begin_delete")
def _(w, p, cell):
    name = w.victim_registry()

    def after(succeeded):
        exists = w.registry_exists(w.target_group, name)
        if succeeded:
            w.victim_registry_gone()
            return "the deleted registry is still there" if exists else None
        return None if exists else "a refused delete removed the registry"

    return Attempt(lambda: p.acr.registries.begin_delete(w.target_group, name).result(),
                   f"{ACR}/registries/delete", registry_id(w.sub, w.target_group, name), after=after)


@operation("resource_groups.get")
def _(w, p, cell):
    return Attempt(lambda: p.rmc.resource_groups.get(w.target_group), f"{GROUPS}/read",
                   group_id(w.sub, w.target_group))


@operation("resource_groups.check_existence")
def _(w, p, cell):
    def call():
        if not p.rmc.resource_groups.check_existence(w.target_group):
            raise AssertionError("check_existence answered False for an existing group")
    return Attempt(call, f"{GROUPS}/read", group_id(w.sub, w.target_group))


@operation("resource_groups.list")
def _(w, p, cell):
    return Attempt(lambda: [g.id for g in p.rmc.resource_groups.list()], f"{GROUPS}/read", f"/subscriptions/{w.sub}",
                   {"T": group_id(w.sub, w.target_group), "O": group_id(w.sub, w.other_group)})


@operation("resource_groups.create_or_update")
def _(w, p, cell):
    name = f"pm-new-{hexid()}"

    def after(succeeded):
        exists = w.rmc.resource_groups.check_existence(name)
        if exists:
            w.rmc.resource_groups.begin_delete(name).result()
        return None if exists == succeeded else f"group exists={exists} after a call that succeeded={succeeded}"

    return Attempt(lambda: p.rmc.resource_groups.create_or_update(name, {"location": "eastus"}),
                   f"{GROUPS}/write", group_id(w.sub, name), after=after)


@operation("resource_groups.put_existing")
def _(w, p, cell):
    return Attempt(lambda: p.rmc.resource_groups.create_or_update(
        w.target_group, {"location": "eastus", "tags": {"purpose": "matrix"}}),
        f"{GROUPS}/write", group_id(w.sub, w.target_group))


@operation("resource_groups.update")
def _(w, p, cell):
    return Attempt(lambda: p.rmc.resource_groups.update(w.target_group, {"tags": {"purpose": "matrix", "cell": cell}}),
                   f"{GROUPS}/write", group_id(w.sub, w.target_group))


@operation("resource_groups.begin_delete")
def _(w, p, cell):
    name = w.victim_group()

    def after(succeeded):
        exists = w.rmc.resource_groups.check_existence(name)
        if succeeded:
            w.victim_group_gone()
            return "the deleted group is still there" if exists else None
        return None if exists else "a refused delete removed the group"

    return Attempt(lambda: p.rmc.resource_groups.begin_delete(name).result(), f"{GROUPS}/delete",
                   group_id(w.sub, name), after=after)


@operation("resources.list")
def _(w, p, cell):
    return Attempt(lambda: [r.id for r in p.rmc.resources.list()], "Microsoft.Resources/subscriptions/resources/read",
                   f"/subscriptions/{w.sub}", _registries_known(w))


def _create_assignment(w: World, p: Principal, scope: str) -> Attempt:
    name = str(uuid.uuid4())
    parameters = RoleAssignmentCreateParameters(
        role_definition_id=f"/subscriptions/{w.sub}/providers/Microsoft.Authorization/roleDefinitions/"
                           f"{ROLE_IDS['AcrPull']}",
        principal_id=w.bystander, principal_type="ServicePrincipal")

    def after(succeeded):
        exists = w.assignment_exists(scope, name)
        if exists:
            w.auth.role_assignments.delete(scope, name)
        return None if exists == succeeded else f"assignment exists={exists} after a call that succeeded={succeeded}"

    return Attempt(lambda: p.auth.role_assignments.create(scope, name, parameters),
                   "Microsoft.Authorization/roleAssignments/write", scope, after=after)


@operation("role_assignments.create")
def _(w, p, cell):
    return _create_assignment(w, p, w.target_scope)


@operation("role_assignments.create_on_group")
def _(w, p, cell):
    """Granting above your own scope: a registry's Owner may not hand out roles on its group."""
    return _create_assignment(w, p, group_id(w.sub, w.target_group))


@operation("role_assignments.get")
def _(w, p, cell):
    return Attempt(lambda: p.auth.role_assignments.get(w.target_scope, w.readable_assignment),
                   "Microsoft.Authorization/roleAssignments/read", w.target_scope)


@operation("role_assignments.list_for_scope")
def _(w, p, cell):
    def call():
        names = {a.name for a in p.auth.role_assignments.list_for_scope(w.target_scope)}
        if w.readable_assignment not in names:
            raise AssertionError("the registry's own role assignment is missing from its list")
    return Attempt(call, "Microsoft.Authorization/roleAssignments/read", w.target_scope)


@operation("role_assignments.delete")
def _(w, p, cell):
    name = w.assign(w.target_scope, "AcrDelete", w.bystander)

    def after(succeeded):
        exists = w.assignment_exists(w.target_scope, name)
        if exists:
            w.auth.role_assignments.delete(w.target_scope, name)
        return None if exists != succeeded else f"assignment exists={exists} after a call that succeeded={succeeded}"

    return Attempt(lambda: p.auth.role_assignments.delete(w.target_scope, name),
                   "Microsoft.Authorization/roleAssignments/delete", w.target_scope, after=after)


@operation("role_definitions.list")
def _(w, p, cell):
    def call():
        names = {d.role_name for d in p.auth.role_definitions.list(w.target_scope)}
        if not names >= {"Owner", "Contributor", "Reader", "AcrPush", "AcrPull"}:
            raise AssertionError(f"built-in roles missing from the list: {sorted(names)}")
    return Attempt(call, "Microsoft.Authorization/roleDefinitions/read", w.target_scope)


@operation("role_definitions.get")
def _(w, p, cell):
    return Attempt(lambda: p.auth.role_definitions.get(w.target_scope, ROLE_IDS["AcrPull"]),
                   "Microsoft.Authorization/roleDefinitions/read", w.target_scope)


LOCKS = "Microsoft.Authorization/locks"


def _lock_call(client: ResourceManagementClient, method: str, scope: str, name: str = "",
               level: str | None = None) -> Any:
    """A Microsoft.Authorization/locks call through the client's pipeline: the installed azure-mgmt-resource no longer
    has a locks client. Errors are raised as the SDK raises them."""
    url = f"{scope}/providers/{LOCKS}" + (f"/{name}" if name else "") + "?api-version=2020-05-01"
    response = client.send_request(HttpRequest(method, url, json={"properties": {"level": level}} if level else None))
    if response.status_code >= 400:
        error = ResourceNotFoundError if response.status_code == 404 else HttpResponseError
        raise error(response=response, error_format=ARMErrorFormat)
    return response.json() if response.content else None


def _lock_exists(w: World, scope: str, name: str) -> bool:
    try:
        _lock_call(w.rmc, "GET", scope, name)
        return True
    except ResourceNotFoundError:
        return False


def _owners_lock(w: World, scope: str) -> tuple[str, Callable[[bool], str | None]]:
    """A CanNotDelete lock the owner makes for one call, and the clean-up that removes it (a lock left behind would
    refuse later cells' deletes)."""
    name = f"pm-lock-{hexid()}"
    _lock_call(w.rmc, "PUT", scope, name, "CanNotDelete")

    def after(_succeeded: bool) -> str | None:
        _lock_call(w.rmc, "DELETE", scope, name)
        return None

    return name, after


def _create_lock(w: World, p: Principal, scope: str) -> Attempt:
    name = f"pm-lock-{hexid()}"

    def after(succeeded):
        exists = _lock_exists(w, scope, name)
        if exists:
            _lock_call(w.rmc, "DELETE", scope, name)
        return None if exists == succeeded else f"lock exists={exists} after a call that succeeded={succeeded}"

    return Attempt(lambda: _lock_call(p.rmc, "PUT", scope, name, "CanNotDelete"), f"{LOCKS}/write", scope,
                   after=after)


@operation("locks.create")
def _(w, p, cell):
    return _create_lock(w, p, w.target_scope)


@operation("locks.create_on_group")
def _(w, p, cell):
    return _create_lock(w, p, group_id(w.sub, w.target_group))


@operation("locks.get")
def _(w, p, cell):
    name, after = _owners_lock(w, w.target_scope)
    return Attempt(lambda: _lock_call(p.rmc, "GET", w.target_scope, name), f"{LOCKS}/read", w.target_scope,
                   after=after)


@operation("locks.list_for_scope")
def _(w, p, cell):
    name, after = _owners_lock(w, w.target_scope)

    def call():
        if not any(lock["name"] == name for lock in _lock_call(p.rmc, "GET", w.target_scope)["value"]):
            raise AssertionError("the registry's own lock is missing from its list")
    return Attempt(call, f"{LOCKS}/read", w.target_scope, after=after)


@operation("locks.delete")
def _(w, p, cell):
    name = f"pm-lock-{hexid()}"
    _lock_call(w.rmc, "PUT", w.target_scope, name, "CanNotDelete")

    def after(succeeded):
        exists = _lock_exists(w, w.target_scope, name)
        if exists:
            _lock_call(w.rmc, "DELETE", w.target_scope, name)
        return None if exists != succeeded else f"lock exists={exists} after a call that succeeded={succeeded}"

    return Attempt(lambda: _lock_call(p.rmc, "DELETE", w.target_scope, name), f"{LOCKS}/delete", w.target_scope,
                   after=after)


def test_every_operation_has_a_row_and_every_row_an_operation():
    assert list(EXPECTED) == list(OPERATIONS)


# --- the matrix ----------------------------------------------------------------------------------------------

def _is_within(resource_id: str, scope: str) -> bool:
    resource_id, scope = resource_id.lower(), scope.lower()
    return resource_id == scope or resource_id.startswith(scope + "/")


def _run(w: World, p: Principal, cell: str, grant_scope: str | None, name: str) -> str | None:
    """None when the operation behaved as the table says, else what went wrong."""
    want = EXPECTED[name][cell]
    attempt = OPERATIONS[name](w, p, cell)
    succeeded, problems = False, []
    try:
        result = attempt.call()
        succeeded = True
    except HttpResponseError as exc:
        if exc.status_code != 403:
            got = f"HTTP {exc.status_code} {exc.error.code if exc.error else ''}: {exc.message[:300]}"
        else:
            got = "."
            problems += _refusal_problems(exc, p, attempt, name)
    except AssertionError as exc:
        got = f"wrong answer: {exc}"
    if succeeded:
        got = "Y"
        if attempt.known is not None:
            ids = {i.lower() for i in result}
            got = "".join(k for k, v in attempt.known.items() if v.lower() in ids) or "0"
            if grant_scope is not None and grant_scope.rstrip("/").count("/") != 2:  # narrower than the sub
                outside = sorted(i for i in result if not _is_within(i, grant_scope))
                if outside:
                    problems.append(f"lists items outside {grant_scope}: {outside}")
    if attempt.after is not None and (problem := attempt.after(succeeded)):
        problems.append(problem)
    if got != want:
        problems.insert(0, f"expected {want!r}, got {got!r}")
    return f"{name}: " + "; ".join(problems) if problems else None


def _refusal_problems(exc: HttpResponseError, p: Principal, attempt: Attempt, name: str) -> list[str]:
    """A 403 carries AuthorizationFailed and names the client, object id, action and scope (HEAD: no body)."""
    if name == "resource_groups.check_existence":
        return []
    if exc.error is None or exc.error.code != "AuthorizationFailed":
        return [f"403 without code AuthorizationFailed: {exc.message[:300]}"]
    message = exc.error.message or ""
    missing = [what for what, text in (("client", p.client_name), ("object id", p.object_id),
                                       ("action", attempt.action), ("scope", attempt.scope))
               if f"'{text.lower()}'" not in message.lower()]
    return [f"403 message does not name the {', '.join(missing)}: {message}"] if missing else []


@pytest.mark.parametrize("cell", CELLS)
def test_protection_matrix(world, cell):
    role, _, scope = cell.partition("-")
    principal = world.principal(cell)
    grant_scope = world.scope_of(scope) if scope else None
    assignment = world.assign(grant_scope, role, principal.object_id) if scope else None
    try:
        problems = [problem for name in EXPECTED if (problem := _run(world, principal, cell, grant_scope, name))]
    finally:
        if assignment:
            world.auth.role_assignments.delete(grant_scope, assignment)
    assert not problems, f"{cell}:\n  " + "\n  ".join(problems)


def test_revoking_a_role_assignment_refuses_the_next_call(world):
    principal = world.principal("revoked")
    assignment = world.assign(world.target_scope, "Reader", principal.object_id)
    assert principal.acr.registries.get(world.target_group, world.target).name == world.target
    assert [r.name for r in principal.acr.registries.list()] == [world.target]

    world.auth.role_assignments.delete(world.target_scope, assignment)

    # The same cached token: revocation does not wait for it to expire.
    for call in (lambda: principal.acr.registries.get(world.target_group, world.target),
                 lambda: list(principal.acr.registries.list())):
        with pytest.raises(HttpResponseError) as refused:
            call()
        assert refused.value.status_code == 403
        assert refused.value.error.code == "AuthorizationFailed"
        assert principal.object_id in refused.value.error.message

    world.assign(world.target_scope, "Reader", principal.object_id)
    assert principal.acr.registries.get(world.target_group, world.target).name == world.target


@pytest.mark.parametrize("role", ["Owner", "Contributor"])
def test_deleting_the_scope_you_hold_completes(world, role):
    """A group's (registry's) own Owner or Contributor deletes it and the SDK's poller sees the deletion through."""
    group = f"pm-own-{hexid()}"
    world.rmc.resource_groups.create_or_update(group, {"location": "eastus"})
    world.extra_groups.append(group)
    registry = f"pmown{hexid()}"
    world.create_registry(group, registry)

    on_registry = world.principal(f"{role}-own-registry")
    world.assign(registry_id(world.sub, group, registry), role, on_registry.object_id)
    on_registry.acr.registries.begin_delete(group, registry).result()
    assert not world.registry_exists(group, registry)

    on_group = world.principal(f"{role}-own-group")
    world.assign(group_id(world.sub, group), role, on_group.object_id)
    on_group.rmc.resource_groups.begin_delete(group).result()
    assert not world.rmc.resource_groups.check_existence(group)


# --- users and groups: the same cells, with the role held by a user, by a group of hers, or by a group that holds
# a group of hers. The user signs in with her password (az's public client id); refusals name her by UPN, as Azure
# does, and her object id. --------------------------------------------------------------------------------------

AZ_CLIENT_ID = "04b07795-8ddb-461a-bbee-02f9e1bf7b46"
DIRECTORY_CELLS = [("user", "Reader-group"), ("user", "none"), ("group", "Contributor-registry"),
                   ("nested-group", "AcrPush-subscription"), ("nested-group", "Owner-other")]
USER_PASSWORD = "Matr1x-Passw0rd!"


class PasswordCredential:
    """An azure-core TokenCredential that signs a user in with the password grant (one token per scope)."""

    def __init__(self, service, username: str, password: str):
        self.service, self.username, self.password = service, username, password
        self.tokens: dict[str, Any] = {}

    def get_token(self, *scopes: str, **kwargs: Any):
        import time

        import requests
        from azure.core.credentials import AccessToken

        scope = " ".join(scopes)
        if scope not in self.tokens:
            response = requests.post(
                f"{self.service.url}/{self.service.tenant_id}/oauth2/v2.0/token", timeout=30, verify=self.service.ca,
                data={"grant_type": "password", "client_id": AZ_CLIENT_ID, "username": self.username,
                      "password": self.password, "scope": scope})
            response.raise_for_status()
            body = response.json()
            self.tokens[scope] = AccessToken(body["access_token"], int(time.time()) + body["expires_in"])
        return self.tokens[scope]


def user_principal(w: World, label: str) -> Principal:
    user = w.service.cli_json("user", "create", "--name", f"pm-{label}-{hexid(6)}", "--password", USER_PASSWORD)
    credential = PasswordCredential(w.service, user["userPrincipalName"], USER_PASSWORD)
    kwargs = client_kwargs(w.service)
    return Principal(user["userPrincipalName"], user["id"],
                     ContainerRegistryManagementClient(credential, w.sub, **kwargs),
                     ResourceManagementClient(credential, w.sub, **kwargs),
                     AuthorizationManagementClient(credential, w.sub, **kwargs))


def holder_of_role(w: World, holder: str, user_id: str) -> tuple[str, str, list[str]]:
    """(principal id, principal type) that the role is assigned to, and the groups made for it."""
    if holder == "user":
        return user_id, "User", []
    inner = w.service.cli_json("group", "create", "--name", f"pm-inner-{hexid(6)}")["id"]
    w.service.cli_json("group", "add-member", "--group", inner, "--member", user_id)
    if holder == "group":
        return inner, "Group", [inner]
    outer = w.service.cli_json("group", "create", "--name", f"pm-outer-{hexid(6)}")["id"]
    w.service.cli_json("group", "add-member", "--group", outer, "--member", inner)
    return outer, "Group", [outer, inner]


@pytest.mark.parametrize(("holder", "cell"), DIRECTORY_CELLS)
def test_protection_matrix_for_users_and_groups(world, holder, cell):
    role, _, scope = cell.partition("-")
    principal = user_principal(world, f"{holder}-{cell}")
    grantee, principal_type, groups = holder_of_role(world, holder, principal.object_id)
    grant_scope = world.scope_of(scope) if scope else None
    name = str(uuid.uuid4())
    if scope:
        world.auth.role_assignments.create(grant_scope, name, RoleAssignmentCreateParameters(
            role_definition_id=f"/subscriptions/{world.sub}/providers/Microsoft.Authorization/roleDefinitions/"
                               f"{ROLE_IDS[role]}", principal_id=grantee, principal_type=principal_type))
    try:
        problems = [problem for operation in EXPECTED
                    if (problem := _run(world, principal, cell, grant_scope, operation))]
    finally:
        if scope:
            world.auth.role_assignments.delete(grant_scope, name)
        for group in groups:
            world.service.cli_json("group", "delete", "--group", group)
        world.service.cli_json("user", "delete", "--id", principal.object_id)
    assert not problems, f"{holder} {cell}:\n  " + "\n  ".join(problems)
