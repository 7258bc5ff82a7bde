"""The work the operation worker does for registries: make, heal and remove their blob containers.

Every handler is safe to run again after a crash, and checks the registry row again after touching storage, so
a delete racing a create never leaves a container without its row.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from control_plane.authorization import scopes
from control_plane.authorization import service as authorization
from control_plane.managed_identities import service as managed_identities
from control_plane.operations import service as operations
from control_plane.operations.models import Operation
from control_plane.registries import service
from control_plane.registries.models import Registry
from control_plane.resource_groups import service as resource_groups
from control_plane.resource_groups.models import ResourceGroup
from control_plane.storage import StorageError

STORAGE_FAILED = "StorageOperationFailed"


def _store(services: Any, operation: Operation):
    return services.storage.for_location(operation.payload["location"])


def provision(services: Any, operation: Operation) -> None:
    container = operation.payload["container"]
    registry_id = operation.payload["registryId"]
    store = _store(services, operation)
    try:
        if _is_going_away(services, registry_id):
            store.delete_container(container)
            return
        store.create_container(container)
        # Succeeded only if the row still wants its container; if it is gone or being deleted meanwhile, the
        # container goes too (the state is read again only in that rare case).
        with services.db.session() as session:
            marked = session.execute(
                sa.update(Registry)
                .where(Registry.id == registry_id,
                       Registry.provisioning_state.in_((service.CREATING, service.UPDATING, service.FAILED)))
                .values(provisioning_state=service.SUCCEEDED)
                .execution_options(synchronize_session=False)
            ).rowcount
        if not marked and _is_going_away(services, registry_id):
            store.delete_container(container)
    except StorageError as exc:
        raise operations.OperationFailed(STORAGE_FAILED, str(exc)) from None


def _is_going_away(services: Any, registry_id: str) -> bool:
    with services.db.session() as session:
        state = session.scalar(sa.select(Registry.provisioning_state).where(Registry.id == registry_id))
    return state is None or state == service.DELETING


def delete(services: Any, operation: Operation) -> None:
    try:
        _store(services, operation).delete_container(operation.payload["container"])
    except StorageError as exc:
        raise operations.OperationFailed(STORAGE_FAILED, str(exc)) from None
    with services.db.session() as session:
        registry = session.get(Registry, operation.payload["registryId"])
        if registry is not None:
            authorization.remove_at_or_below(session, registry.arm_id)
            managed_identities.release(session, registry.identity)
            session.delete(registry)


def mark_failed(services: Any, operation: Operation, _message: str) -> None:
    with services.db.session() as session:
        session.execute(sa.update(Registry).where(Registry.id == operation.payload["registryId"])
                        .values(provisioning_state=service.FAILED))


def delete_all_in_group(services: Any, group: ResourceGroup) -> None:
    """Group delete: each registry's container, then its row (a storage error stops the group delete)."""
    with services.db.session() as session:
        registries = list(session.scalars(sa.select(Registry).where(Registry.resource_group_id == group.id)))
        session.execute(sa.update(Registry).where(Registry.resource_group_id == group.id)
                        .values(provisioning_state=service.DELETING))
    for registry in registries:
        try:
            services.storage.for_location(registry.location).delete_container(registry.container_name)
        except StorageError as exc:
            raise operations.OperationFailed(STORAGE_FAILED, str(exc)) from None
        with services.db.session() as session:
            authorization.remove_at_or_below(session, registry.arm_id)
            managed_identities.release(session, registry.identity)
            session.execute(sa.delete(Registry).where(Registry.id == registry.id))


def _scope_of(session, subscription_id: str, group_name: str, name: str) -> str:
    return service.get(session, resource_groups.get(session, subscription_id, group_name), name).arm_id


def register() -> None:
    scopes.register_resource_resolver(service.REGISTRY_TYPE, _scope_of)
    operations.register_handler(service.PROVISION_KIND, provision, on_failure=mark_failed)
    operations.register_handler(service.DELETE_KIND, delete, on_failure=mark_failed)
    resource_groups.register_cascade(delete_all_in_group)
    resource_groups.register_resource_lister(service.REGISTRY_TYPE, service.generic_resources)
