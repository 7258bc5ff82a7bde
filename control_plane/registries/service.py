"""Registries: create-or-replace, update, read, list, delete, admin credentials and usages.

Provisioning (the blob container) happens in operations run by the worker; see provisioning.py.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, object_session

from control_plane.arm.errors import BadRequest, Conflict, ResourceGroupNotFound, ResourceNotFound
from control_plane.arm.paging import PageRequest
from control_plane.crypto import Cipher, random_password
from control_plane.db import insert_unless_duplicate, utcnow
from control_plane.identity.tokens import Caller
from control_plane.locks import service as locks
from control_plane.managed_identities import service as managed_identities
from control_plane.operations import service as operations
from control_plane.registries import names
from control_plane.registries.models import Registry, RegistryView
from control_plane.registries.schemas import DEFAULT_PROPERTIES, REGISTRY_TYPE, merge, with_defaults
from control_plane.resource_groups.models import ResourceGroup

PROVISION_KIND = "registries/provision"
DELETE_KIND = "registries/delete"
CREATING, UPDATING, DELETING, SUCCEEDED, FAILED = "Creating", "Updating", "Deleting", "Succeeded", "Failed"
GIB = 1024 ** 3

# Per-SKU limits, from the ACR service tiers.
SKU_LIMITS = {
    "Classic": {"Size": 10 * GIB, "Webhooks": 2, "ScopeMaps": 100, "Tokens": 100},
    "Basic": {"Size": 10 * GIB, "Webhooks": 2, "ScopeMaps": 100, "Tokens": 100},
    "Standard": {"Size": 100 * GIB, "Webhooks": 10, "ScopeMaps": 500, "Tokens": 500},
    "Premium": {"Size": 500 * GIB, "Webhooks": 500, "ScopeMaps": 50000, "Tokens": 50000},
}


@dataclass(frozen=True)
class Change:
    registry: Registry
    operation: operations.Operation
    created: bool = False


def find(session: Session, group: ResourceGroup, name: str) -> Registry | None:
    return session.scalar(sa.select(Registry).where(Registry.resource_group_id == group.id,
                                                    Registry.name_key == name.lower()))


def by_id(session: Session, registry_id: str) -> Registry | None:
    return session.get(Registry, registry_id)


def get(session: Session, group: ResourceGroup, name: str) -> Registry:
    registry = find(session, group, name)
    if registry is None:
        raise ResourceNotFound(REGISTRY_TYPE, name, group.name)
    return registry


_IN_GROUP = (sa.select(ResourceGroup.name.label("group_name"), Registry)
             .outerjoin(Registry, sa.and_(Registry.resource_group_id == ResourceGroup.id,
                                          Registry.name_key == sa.bindparam("name_key")))
             .where(ResourceGroup.subscription_id == sa.bindparam("subscription_id"),
                    ResourceGroup.name_key == sa.bindparam("group_key")))


def get_in_group(session: Session, subscription_id: str, group_name: str, name: str) -> Registry:
    """A registry by its URL in one query (group and registry joined, the statement built once); the group's or
    the registry's 404."""
    row = session.execute(_IN_GROUP, _in_group_params(subscription_id, group_name, name)).first()
    _check_found(row, "Registry", group_name, name)
    return row.Registry


def view_in_group(session: Session, subscription_id: str, group_name: str, name: str) -> RegistryView:
    """get_in_group for display only: the same query run as plain SQL, its row read without the ORM (no identity
    map, no instance state) — half the cost of the hottest read there is, a GET of one registry."""
    row = session.connection().execute(_IN_GROUP, _in_group_params(subscription_id, group_name, name)).first()
    _check_found(row, "id", group_name, name)
    return RegistryView(row)


def _in_group_params(subscription_id: str, group_name: str, name: str) -> dict[str, str]:
    return {"name_key": name.lower(), "subscription_id": subscription_id, "group_key": group_name.lower()}


def _check_found(row, registry_field: str, group_name: str, name: str) -> None:
    """No row: no such group. A row whose `registry_field` is empty: the group has no such registry (outer join)."""
    if row is None:
        raise ResourceGroupNotFound(group_name)
    if getattr(row, registry_field) is None:
        raise ResourceNotFound(REGISTRY_TYPE, name, row.group_name)


def check_name_availability(session: Session, name: Any, resource_type: Any) -> dict[str, Any]:
    if resource_type != REGISTRY_TYPE:
        raise BadRequest(f"The resource type '{str(resource_type)[:100]}' is not valid; expected "
                         f"'{REGISTRY_TYPE}'.", code="InvalidParameter", target="type")
    problem = names.name_problem(name)
    if problem:
        return {"nameAvailable": False, "reason": "Invalid", "message": problem}
    if session.scalar(sa.select(Registry.id).where(Registry.name_key == name.lower())):
        return {"nameAvailable": False, "reason": "AlreadyExists", "message": f"The registry {name} is already in use."}
    return {"nameAvailable": True}


def _caller_fields(caller: Caller) -> tuple[str, str]:
    """systemData's createdBy/createdByType: a user's UPN and "User", else the application's appId."""
    if caller.principal_type == "User":
        return caller.client_name, "User"
    return caller.app_id or caller.object_id, "Application"


def check_sku_features(sku: str, properties: dict[str, Any], public_access_sent: bool = True) -> None:
    """Premium-only settings (and Standard-or-better anonymous pull) refused on lower tiers, as ACR does.

    A PUT that disables exports without naming publicNetworkAccess is accepted, as ACR accepts it (the Azure
    Verified Modules registry module deploys exactly that with its defaults); naming it Enabled is refused."""
    premium = [
        ("networkRuleSet.defaultAction", properties["networkRuleSet"]["defaultAction"] == "Deny"),
        ("networkRuleSet.ipRules", bool(properties["networkRuleSet"]["ipRules"])),
        ("publicNetworkAccess", properties["publicNetworkAccess"] == "Disabled"),
        ("zoneRedundancy", properties["zoneRedundancy"] == "Enabled"),
        ("dataEndpointEnabled", properties["dataEndpointEnabled"]),
        ("encryption", properties["encryption"]["status"] == "enabled"),
        ("policies.trustPolicy", properties["policies"]["trustPolicy"]["status"] == "enabled"),
        ("policies.retentionPolicy", properties["policies"]["retentionPolicy"]["status"] == "enabled"),
        ("policies.quarantinePolicy", properties["policies"]["quarantinePolicy"]["status"] == "enabled"),
        ("policies.exportPolicy", properties["policies"]["exportPolicy"]["status"] == "disabled"),
    ]
    if sku != "Premium":
        for target, used in premium:
            if used:
                raise BadRequest(f"The property '{target}' can only be set on registries with the Premium SKU; "
                                 f"this registry's SKU is '{sku}'.", code="FeatureNotSupportedForSku",
                                 target=f"properties.{target}")
    if sku in ("Basic", "Classic") and properties["anonymousPullEnabled"]:
        raise BadRequest(f"Anonymous pull requires the Standard or Premium SKU; this registry's SKU is '{sku}'.",
                         code="FeatureNotSupportedForSku", target="properties.anonymousPullEnabled")
    export_disabled = properties["policies"]["exportPolicy"]["status"] == "disabled"
    if export_disabled and properties["publicNetworkAccess"] != "Disabled" and public_access_sent:
        raise BadRequest("The export policy can only be disabled when public network access is disabled.",
                         code="InvalidParameter", target="properties.policies.exportPolicy")


def check_zone_redundancy_unchanged(registry: Registry, properties: dict[str, Any]) -> None:
    """Zone redundancy is chosen at creation only, for PUT and PATCH alike (ACR cannot move a registry's data)."""
    if registry.properties["zoneRedundancy"] != properties["zoneRedundancy"]:
        raise BadRequest("The property 'zoneRedundancy' cannot be changed after the registry is created.",
                         code="InvalidParameter", target="properties.zoneRedundancy")


def create_or_replace(session: Session, cipher: Cipher, group: ResourceGroup, name: str, location: str,
                      sku: str, tags: dict, properties: dict, identity: dict | None, caller: Caller,
                      tenant_id: str, login_server_suffix: str) -> Change:
    """PUT: a new registry (201) or a whole replacement of one this group already holds (200)."""
    names.validate_name(name)
    locks.refuse_if_locked(session, f"{group.arm_id}/providers/{REGISTRY_TYPE}/{name}", locks.WRITE)
    public_access_sent = properties.get("publicNetworkAccess") is not None
    properties = with_defaults(properties)
    check_sku_features(sku, properties, public_access_sent)
    by, by_type = _caller_fields(caller)
    existing = session.scalar(sa.select(Registry).where(Registry.name_key == name.lower()))
    if existing is None:
        managed_identities.check(session, identity, tenant_id, f"{group.arm_id}/providers/{REGISTRY_TYPE}/{name}")
        registry = Registry(
            id=str(uuid.uuid4()), subscription_id=group.subscription_id, resource_group_id=group.id,
            resource_group_name=group.name, name=name, name_key=name.lower(), location=location, sku=sku, tags=tags,
            identity=None, properties=properties, provisioning_state=CREATING,
            admin_password_1=cipher.encrypt(random_password()), admin_password_2=cipher.encrypt(random_password()),
            created_by=by, created_by_type=by_type, modified_by=by, modified_by_type=by_type,
        )
        registry.container_name = f"{name.lower()}-{registry.id[:8]}"
        if insert_unless_duplicate(session, registry):
            # After the insert, so a name lost to a concurrent create never made a principal.
            registry.identity = managed_identities.resource_identity(
                session, identity, None, tenant_id, registry.arm_id, name, patch=False)
            return Change(registry, _start(session, PROVISION_KIND, registry), created=True)
        existing = session.scalar(sa.select(Registry).where(Registry.name_key == name.lower()))
        if existing is None:  # taken a moment ago, and already gone again
            raise Conflict(names.taken_message(name, login_server_suffix), code="AlreadyInUse")

    if existing.resource_group_id != group.id:
        raise Conflict(names.taken_message(name, login_server_suffix), code="AlreadyInUse")
    registry = existing
    if registry.provisioning_state == DELETING:
        raise Conflict(f"The registry '{registry.name}' is being deleted; retry once the delete has finished.",
                       code="RegistryBeingDeleted")
    if registry.location != location:
        raise BadRequest(f"The resource '{registry.name}' already exists in location '{registry.location}' in "
                         f"resource group '{group.name}'. A resource with the same name cannot be created in "
                         f"location '{location}'. Please select a new resource name.",
                         code="InvalidResourceLocation", target="location")
    check_zone_redundancy_unchanged(registry, properties)
    registry.sku, registry.tags, registry.properties = sku, tags, properties
    registry.identity = managed_identities.resource_identity(session, identity, registry.identity, tenant_id,
                                                             registry.arm_id, registry.name, patch=False)
    _touch(registry, caller, UPDATING)
    return Change(registry, _start(session, PROVISION_KIND, registry))


def update(session: Session, registry: Registry, patch: dict[str, Any], location: Any, caller: Caller,
           tenant_id: str) -> Change:
    """PATCH: merge what was sent; tags replace the whole map; location and zone redundancy never change."""
    locks.refuse_if_locked(session, registry.arm_id, locks.WRITE)
    if registry.provisioning_state == DELETING:
        raise Conflict(f"The registry '{registry.name}' is being deleted.", code="RegistryBeingDeleted")
    if location is not None and (not isinstance(location, str) or
                                 "".join(location.split()).lower() != registry.location):
        raise BadRequest("The property 'location' cannot be changed.", code="InvalidParameter", target="location")
    properties = merge(registry.properties, patch.get("properties") or {}, DEFAULT_PROPERTIES)
    check_zone_redundancy_unchanged(registry, properties)
    sku = patch["sku"]["name"] if "sku" in patch else registry.sku
    check_sku_features(sku, properties)
    registry.properties, registry.sku = properties, sku
    if "tags" in patch:
        registry.tags = patch["tags"]
    if "identity" in patch:
        registry.identity = managed_identities.resource_identity(session, patch["identity"], registry.identity,
                                                                 tenant_id, registry.arm_id, registry.name, patch=True)
    _touch(registry, caller, UPDATING)
    return Change(registry, _start(session, PROVISION_KIND, registry))


def begin_delete(session: Session, registry: Registry) -> operations.Operation:
    locks.refuse_if_locked(session, registry.arm_id, locks.DELETE)
    registry.provisioning_state = DELETING
    registry.modified_at = utcnow()
    return _start(session, DELETE_KIND, registry)


def _touch(registry: Registry, caller: Caller, state: str) -> None:
    registry.modified_by, registry.modified_by_type = _caller_fields(caller)
    registry.modified_at = utcnow()
    registry.provisioning_state = state


def _start(session: Session, kind: str, registry: Registry) -> operations.Operation:
    session.flush()
    return operations.start(session, kind, registry.subscription_id, registry.arm_id, prefix="registries",
                            payload={"registryId": registry.id, "container": registry.container_name,
                                     "location": registry.location})


def list_page(session: Session, page: PageRequest, subscription_id: str, group: ResourceGroup | None = None,
              visible: list[str] | None = None) -> tuple[list[Registry], tuple | None]:
    """Registries in name order, one keyset page at a time.

    `visible` (lower-cased scope keys of groups or registries) narrows the list to what a caller may read when
    they may not read the whole subscription or group; None means no narrowing.
    """
    # A group's list filters on the group alone (it implies the subscription), so the (group, name) index serves
    # it: each page is then one range scan of that index, however deep the walk.
    query = sa.select(Registry).where(Registry.subscription_id == subscription_id) if group is None else \
        sa.select(Registry).where(Registry.resource_group_id == group.id)
    if visible is not None:
        if not visible:
            return [], None
        query = query.where(sa.or_(*(_scope_condition(key) for key in visible)))
    if page.after:
        query = query.where(Registry.name_key > page.after[0])
    registries = list(session.scalars(query.order_by(Registry.name_key).limit(page.size + 1)))
    more = len(registries) > page.size
    registries = registries[: page.size]
    return registries, ((registries[-1].name_key,) if more else None)


def _scope_condition(key: str):
    """`/subscriptions/s/resourcegroups/g[/providers/microsoft.containerregistry/registries/r]` as a WHERE term."""
    parts = key.strip("/").split("/")
    condition = sa.func.lower(Registry.resource_group_name) == parts[3]
    if len(parts) >= 8:
        condition = sa.and_(condition, Registry.name_key == parts[7])
    return condition


def credentials(cipher: Cipher, registry: Registry) -> dict[str, Any]:
    # A POST action: ARM counts it as a write, so a ReadOnly lock refuses it (and regenerateCredential with it).
    locks.refuse_if_locked(object_session(registry), registry.arm_id, locks.WRITE)
    if not registry.properties.get("adminUserEnabled"):
        raise BadRequest(f"Cannot perform credential operations for {registry.arm_id} as admin user is disabled. "
                         "Kindly enable admin user as per docs: https://docs.microsoft.com/azure/container-registry/"
                         "container-registry-authentication#admin-account", code="UnAuthorizedForCredentialOperations")
    return {"username": registry.name, "passwords": [
        {"name": "password", "value": cipher.decrypt(registry.admin_password_1)},
        {"name": "password2", "value": cipher.decrypt(registry.admin_password_2)},
    ]}


def regenerate_credential(session: Session, cipher: Cipher, registry: Registry, which: str) -> dict[str, Any]:
    credentials(cipher, registry)
    if which == "password":
        registry.admin_password_1 = cipher.encrypt(random_password())
    else:
        registry.admin_password_2 = cipher.encrypt(random_password())
    session.flush()
    return credentials(cipher, registry)


def usages(registry: Registry, size_bytes: int) -> dict[str, Any]:
    limits = SKU_LIMITS[registry.sku]
    return {"value": [
        {"name": "Size", "limit": limits["Size"], "currentValue": size_bytes, "unit": "Bytes"},
        {"name": "Webhooks", "limit": limits["Webhooks"], "currentValue": 0, "unit": "Count"},
        {"name": "ScopeMaps", "limit": limits["ScopeMaps"], "currentValue": 0, "unit": "Count"},
        {"name": "Tokens", "limit": limits["Tokens"], "currentValue": 0, "unit": "Count"},
    ]}


def generic_resources(session: Session, subscription_id: str, after: str | None, limit: int) -> list[dict]:
    """Registries as generic ARM resources, for `GET /subscriptions/{sub}/resources`."""
    query = sa.select(Registry).where(Registry.subscription_id == subscription_id)
    registries = list(session.scalars(query.order_by(Registry.resource_group_name, Registry.name_key)))
    items = [{"id": r.arm_id, "name": r.name, "type": REGISTRY_TYPE, "location": r.location,
              "tags": r.tags or {}, "sku": {"name": r.sku, "tier": r.sku}} for r in registries]
    items = sorted((i for i in items if after is None or i["id"].lower() > after), key=lambda i: i["id"].lower())
    return items[:limit]
