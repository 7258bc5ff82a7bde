"""The resource types a template may deploy, each applied through the same service functions its REST routes use
(same validation, same locks, same durable operations), and read back for `reference()` and what-if.

A type missing from KINDS is not hosted here: a template that deploys it fails with NoRegisteredProviderFound.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from control_plane.arm.errors import ArmError, BadRequest
from control_plane.arm.validation import load, validate_location, validate_tags
from control_plane.authorization import actions, scopes
from control_plane.authorization import service as authorization
from control_plane.authorization.actions import Action
from control_plane.authorization.schemas import AssignmentCreate, assignment_to_arm
from control_plane.config import normalise_location
from control_plane.deployments import schemas as deployment_schemas
from control_plane.deployments import service as deployments
from control_plane.deployments.template import Deferred
from control_plane.identity.tokens import Caller
from control_plane.locks import schemas as lock_schemas
from control_plane.locks import service as locks
from control_plane.managed_identities import schemas as identity_schemas
from control_plane.managed_identities import service as managed_identities
from control_plane.managed_identities.models import UserAssignedIdentity
from control_plane.operations.models import IN_PROGRESS, SUCCEEDED, Operation
from control_plane.registries import service as registries
from control_plane.registries.models import Registry
from control_plane.registries.schemas import DEFAULT_PROPERTIES, RegistryPut, with_defaults
from control_plane.registries.serialize import to_arm as registry_to_arm
from control_plane.resource_groups import schemas as group_schemas
from control_plane.resource_groups import service as resource_groups

REGISTRY = "microsoft.containerregistry/registries"
USER_ASSIGNED_IDENTITY = "microsoft.managedidentity/userassignedidentities"
ROLE_ASSIGNMENT = "microsoft.authorization/roleassignments"
LOCK = "microsoft.authorization/locks"
RESOURCE_GROUP = "microsoft.resources/resourcegroups"
DEPLOYMENT = "microsoft.resources/deployments"
# How long applying one resource waits for the operation its service started (a registry's blob container).
OPERATION_WAIT_SECONDS = 600


@dataclass(frozen=True)
class ResourceId:
    """An ARM id read the way ARM reads it: the type after the last `providers`, and the scope it extends."""

    id: str
    subscription_id: str
    group: str | None
    type: str
    name: str
    scope: str


def parse(resource_id: str) -> ResourceId:
    parts = [p for p in resource_id.split("/") if p]
    subscription = parts[1] if len(parts) > 1 and parts[0].lower() == "subscriptions" else ""
    group = parts[3] if len(parts) > 3 and parts[2].lower() == "resourcegroups" else None
    at = resource_id.lower().rfind("/providers/")
    if at < 0:
        if group is not None:
            return ResourceId(resource_id, subscription, group, "Microsoft.Resources/resourceGroups", group,
                              f"/subscriptions/{subscription}")
        return ResourceId(resource_id, subscription, None, "Microsoft.Resources/subscriptions", subscription, "/")
    rest = [p for p in resource_id[at + len("/providers/"):].split("/") if p]
    resource_type = "/".join([rest[0], *rest[1::2]])
    return ResourceId(resource_id, subscription, group, resource_type, "/".join(rest[2::2]),
                      resource_id[:at] or "/")


@dataclass(frozen=True)
class Env:
    """What applying or reading a resource needs: the process's shared services, and who deploys."""

    services: Any
    caller: Caller


@dataclass(frozen=True)
class Kind:
    """One hosted resource type: the action its write needs, how to apply a body, read one, and compare them."""

    write_action: Action
    read: Callable[[Env, Session, ResourceId], dict[str, Any] | None]
    apply: Callable[[Env, ResourceId, dict[str, Any]], bool] | None
    # Comparable views for what-if and for skipping unchanged writes: the desired body, the resource read back.
    desired: Callable[[Env, dict[str, Any]], dict[str, Any]]
    current: Callable[[dict[str, Any]], dict[str, Any]]
    # True: the desired view is the whole state a PUT leaves (absent properties reset); False: only what it names.
    complete: bool = True


def wait_for(services: Any, operation_id: str) -> Operation:
    """The operation a service function started, run here when no worker holds it, else awaited."""
    deadline = time.monotonic() + OPERATION_WAIT_SECONDS
    while True:
        services.worker.run_one(operation_id)
        with services.db.session() as session:
            operation = session.get(Operation, operation_id)
        if operation.status != IN_PROGRESS or time.monotonic() > deadline:
            return operation
        time.sleep(0.1)


def _finished(operation: Operation) -> None:
    if operation.status != SUCCEEDED:
        raise ArmError(operation.error_message or "The resource operation did not finish in time.",
                       code=operation.error_code or "OperationTimedOut", status=409)


# --- registries ---------------------------------------------------------------------------------------------------


def _read_registry(env: Env, session: Session, rid: ResourceId) -> dict[str, Any] | None:
    group = resource_groups.find(session, rid.subscription_id, rid.group or "")
    registry = registries.find(session, group, rid.name) if group else None
    return registry_to_arm(registry, env.services.settings.login_server_suffix) if registry else None


def _load_registry(env: Env, body: dict[str, Any]) -> dict[str, Any]:
    loaded = load(RegistryPut(), body)
    loaded["location"] = validate_location(loaded["location"], env.services.settings.locations,
                                           "resource type 'Microsoft.ContainerRegistry/registries'",
                                           "LocationNotAvailableForResourceType")
    loaded["tags"] = validate_tags(loaded["tags"])
    return loaded


def _apply_registry(env: Env, rid: ResourceId, body: dict[str, Any]) -> bool:
    loaded = _load_registry(env, body)
    settings = env.services.settings
    with env.services.db.session() as session:
        group = resource_groups.get_writable(session, rid.subscription_id, rid.group or "")
        change = registries.create_or_replace(
            session, env.services.cipher, group, rid.name, loaded["location"], loaded["sku"]["name"], loaded["tags"],
            loaded["properties"] or {}, loaded.get("identity"), env.caller, env.caller.tenant_id,
            settings.login_server_suffix)
        operation_id, created = change.operation.id, change.created
    _finished(wait_for(env.services, operation_id))
    return created


def _registry_desired(env: Env, body: dict[str, Any]) -> dict[str, Any]:
    loaded = _load_registry(env, body)
    view = {"location": loaded["location"], "tags": loaded["tags"], "sku": {"name": loaded["sku"]["name"]},
            "properties": with_defaults(loaded["properties"] or {})}
    if loaded.get("identity"):
        view["identity"] = _identity_view(loaded["identity"])
    return view


def _identity_view(identity: dict[str, Any]) -> dict[str, Any]:
    """The identity's type and the user-assigned identities it names (ids compare case-insensitively)."""
    view: dict[str, Any] = {"type": identity["type"]}
    if identity.get("userAssignedIdentities"):
        view["userAssignedIdentities"] = sorted(k.lower() for k, v in identity["userAssignedIdentities"].items()
                                                if v is not None)
    return view


def _registry_current(arm: dict[str, Any]) -> dict[str, Any]:
    properties = {k: copy.deepcopy(arm["properties"][k]) for k in DEFAULT_PROPERTIES if k in arm["properties"]}
    properties.get("policies", {}).get("retentionPolicy", {}).pop("lastUpdatedTime", None)
    view = {"location": arm["location"], "tags": arm.get("tags") or {}, "sku": {"name": arm["sku"]["name"]},
            "properties": properties}
    if arm.get("identity"):
        view["identity"] = _identity_view(arm["identity"])
    return view


def delete_registry(env: Env, rid: ResourceId) -> None:
    """Complete mode's delete of a registry the template no longer declares: the route's delete, awaited."""
    with env.services.db.session() as session:
        group = resource_groups.get(session, rid.subscription_id, rid.group or "")
        registry = registries.find(session, group, rid.name)
        if registry is None:
            return
        operation_id = registries.begin_delete(session, registry).id
    _finished(wait_for(env.services, operation_id))


def list_credentials(env: Env, rid: ResourceId) -> dict[str, Any]:
    with env.services.db.session() as session:
        registry = registries.get_in_group(session, rid.subscription_id, rid.group or "", rid.name)
        return registries.credentials(env.services.cipher, registry)


def resources_in_group(env: Env, session: Session, subscription_id: str, group_name: str) -> list[str]:
    """The ids of the resources a group holds: what Complete mode deletes and what-if reports as Ignore/Delete.
    Registries first, then identities: a registry may name an identity, never the other way round."""
    group = resource_groups.find(session, subscription_id, group_name)
    if group is None:
        return []
    return [r.arm_id for r in session.scalars(sa.select(Registry).where(Registry.resource_group_id == group.id))] + \
        [i.arm_id for i in session.scalars(sa.select(UserAssignedIdentity)
                                           .where(UserAssignedIdentity.resource_group_id == group.id))]


def delete_resource(env: Env, rid: ResourceId) -> None:
    """Complete mode's delete of a resource the template no longer declares, as its route deletes it."""
    if rid.type.lower() == REGISTRY:
        delete_registry(env, rid)
        return
    with env.services.db.session() as session:
        group = resource_groups.get(session, rid.subscription_id, rid.group or "")
        identity = managed_identities.find(session, group, rid.name)
        if identity is not None:
            managed_identities.delete(session, identity)


# --- user-assigned identities -------------------------------------------------------------------------------------


def _read_identity(env: Env, session: Session, rid: ResourceId) -> dict[str, Any] | None:
    group = resource_groups.find(session, rid.subscription_id, rid.group or "")
    identity = managed_identities.find(session, group, rid.name) if group else None
    return identity_schemas.to_arm(identity) if identity else None


def _load_identity(env: Env, body: dict[str, Any]) -> dict[str, Any]:
    loaded = load(identity_schemas.IdentityPut(), body)
    loaded["location"] = validate_location(loaded["location"], env.services.settings.locations,
                                           "resource type 'Microsoft.ManagedIdentity/userAssignedIdentities'",
                                           "LocationNotAvailableForResourceType")
    loaded["tags"] = validate_tags(loaded["tags"])
    return loaded


def _apply_identity(env: Env, rid: ResourceId, body: dict[str, Any]) -> bool:
    managed_identities.validate_name(rid.name)
    loaded = _load_identity(env, body)
    with env.services.db.session() as session:
        group = resource_groups.get_writable(session, rid.subscription_id, rid.group or "")
        _, created = managed_identities.create_or_update(session, group, rid.name, loaded["location"],
                                                         loaded["tags"], env.caller, env.caller.tenant_id)
    return created


def _identity_desired(env: Env, body: dict[str, Any]) -> dict[str, Any]:
    loaded = _load_identity(env, body)
    return {"location": loaded["location"], "tags": loaded["tags"]}


def _identity_current(arm: dict[str, Any]) -> dict[str, Any]:
    return {"location": arm["location"], "tags": arm.get("tags") or {}}


# --- role assignments ---------------------------------------------------------------------------------------------


def _read_assignment(env: Env, session: Session, rid: ResourceId) -> dict[str, Any] | None:
    assignment = authorization.find(session, env.caller.tenant_id, rid.scope, rid.name)
    return assignment_to_arm(assignment) if assignment else None


def _apply_assignment(env: Env, rid: ResourceId, body: dict[str, Any]) -> bool:
    properties = load(AssignmentCreate(), body)["properties"]
    with env.services.db.session() as session:
        canonical, _ = scopes.resolve(session, rid.scope)
        _, created = authorization.create(
            session, env.caller.tenant_id, canonical, rid.name, authorization.AssignmentRequest(
                role_definition_id=properties["roleDefinitionId"], principal_id=properties["principalId"],
                principal_type=properties["principalType"], description=properties["description"],
                condition=properties["condition"], condition_version=properties["conditionVersion"],
                delegated_managed_identity_resource_id=properties["delegatedManagedIdentityResourceId"]),
            env.caller.object_id)
    return created


def _assignment_view(properties: dict[str, Any]) -> dict[str, Any]:
    """Role and principal compared by GUID; a value known only when deployed (`reference(...).principalId`) stays
    deferred, so what-if does not call it a change."""
    view = {key: value if isinstance(value, Deferred) else str(value or "").rsplit("/", 1)[-1].lower()
            for key, value in (("roleDefinitionId", properties.get("roleDefinitionId")),
                               ("principalId", properties.get("principalId")))}
    for key in ("principalType", "description", "condition"):
        if properties.get(key) is not None:
            view[key] = properties[key]
    return {"properties": view}


def _assignment_desired(env: Env, body: dict[str, Any]) -> dict[str, Any]:
    return _assignment_view(body.get("properties") or {})


def _assignment_current(arm: dict[str, Any]) -> dict[str, Any]:
    return _assignment_view(arm["properties"])


# --- locks ------------------------------------------------------------------------------------------------------


def _read_lock(env: Env, session: Session, rid: ResourceId) -> dict[str, Any] | None:
    lock = locks.find(session, locks.normalise_scope(rid.scope), rid.name)
    return lock_schemas.to_arm(lock) if lock else None


def _apply_lock(env: Env, rid: ResourceId, body: dict[str, Any]) -> bool:
    properties = load(lock_schemas.LockPut(), body)["properties"]
    with env.services.db.session() as session:
        _, created = locks.create_or_update(
            session, locks.normalise_scope(rid.scope), rid.name,
            locks.LockRequest(level=properties["level"], notes=properties["notes"], owners=properties["owners"] or []),
            env.caller.object_id)
    return created


def _lock_view(properties: dict[str, Any]) -> dict[str, Any]:
    return {"properties": {"level": str(properties.get("level") or ""), "notes": properties.get("notes") or None}}


# --- resource groups (subscription-scope deployments) -------------------------------------------------------------


def _read_group(env: Env, session: Session, rid: ResourceId) -> dict[str, Any] | None:
    group = resource_groups.find(session, rid.subscription_id, rid.name)
    return group_schemas.to_arm(group) if group else None


def _load_group(env: Env, body: dict[str, Any]) -> dict[str, Any]:
    loaded = load(group_schemas.ResourceGroupPut(), body)
    loaded["location"] = validate_location(loaded["location"], env.services.settings.locations, "resource group",
                                           "LocationNotAvailableForResourceGroup")
    loaded["tags"] = validate_tags(loaded["tags"])
    return loaded


def _apply_group(env: Env, rid: ResourceId, body: dict[str, Any]) -> bool:
    resource_groups.validate_name(rid.name)
    loaded = _load_group(env, body)
    with env.services.db.session() as session:
        _, created = resource_groups.create_or_update(session, rid.subscription_id, rid.name, loaded["location"],
                                                      loaded["tags"], loaded["managed_by"])
    return created


def _group_desired(env: Env, body: dict[str, Any]) -> dict[str, Any]:
    location = body.get("location")
    return {"location": normalise_location(location) if isinstance(location, str) else location,
            "tags": body.get("tags") or {}}


def _group_current(arm: dict[str, Any]) -> dict[str, Any]:
    return {"location": arm["location"], "tags": arm.get("tags") or {}}


# --- nested deployments (applied by the applier itself) ----------------------------------------------------------


def _read_deployment(env: Env, session: Session, rid: ResourceId) -> dict[str, Any] | None:
    deployment = deployments.find(session, rid.scope, rid.name)
    return deployment_schemas.to_arm(deployment) if deployment else None


def _nothing(_arm: dict[str, Any]) -> dict[str, Any]:
    return {}


KINDS: dict[str, Kind] = {
    REGISTRY: Kind(actions.REGISTRY_WRITE, _read_registry, _apply_registry, _registry_desired,
                   _registry_current),
    USER_ASSIGNED_IDENTITY: Kind(actions.IDENTITY_WRITE, _read_identity, _apply_identity, _identity_desired,
                                 _identity_current),
    ROLE_ASSIGNMENT: Kind(actions.ROLE_ASSIGNMENT_WRITE, _read_assignment, _apply_assignment,
                          _assignment_desired, _assignment_current, complete=False),
    LOCK: Kind(actions.LOCK_WRITE, _read_lock, _apply_lock, lambda env, body: _lock_view(
        body.get("properties") or {}), lambda arm: _lock_view(arm["properties"]), complete=False),
    RESOURCE_GROUP: Kind(actions.GROUP_WRITE, _read_group, _apply_group, _group_desired, _group_current),
    DEPLOYMENT: Kind(actions.DEPLOYMENT_WRITE, _read_deployment, None,
                     lambda env, body: {}, _nothing),
}


def kind_of(resource_type: str) -> Kind | None:
    return KINDS.get(resource_type.lower())


def no_provider(resource_type: str, api_version: str | None, location: str | None, resource_id: str
                ) -> dict[str, Any]:
    """ARM's error for a type no registered provider serves, as an error object naming the resource."""
    namespace, _, short_type = resource_type.partition("/")
    return {"code": "NoRegisteredProviderFound",
            "message": f"No registered resource provider found for location '{location or 'global'}' and API version "
                       f"'{api_version}' for type '{short_type}' of namespace '{namespace}'. This service hosts "
                       f"only: {', '.join(sorted(k for k in KINDS))}.",
            "target": resource_id}


def unsupported(resource_type: str) -> BadRequest:
    return BadRequest(f"The resource type '{resource_type}' is not hosted by this service.",
                      code="NoRegisteredProviderFound")
