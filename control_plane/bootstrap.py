"""What `control-plane init`, `tenant create`, `subscription create` and `sp create` do: tenants and their owners."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from control_plane.arm.errors import BadRequest, NotFound
from control_plane.authorization import roles
from control_plane.authorization import service as authorization
from control_plane.identity import service as identity
from control_plane.identity.models import ServicePrincipal, SystemState

BOOTSTRAP_KEY = "bootstrap"
# Display names are 256 characters; the tenant's subscription and admin principal add a suffix to its name.
MAX_TENANT_NAME = 200


def _bootstrap_state(session: Session) -> dict[str, Any] | None:
    state = session.get(SystemState, BOOTSTRAP_KEY)
    return dict(state.value) if state else None


def init(session: Session, reset_secret: bool = False) -> tuple[dict[str, Any], str | None]:
    """Idempotent: the same tenant, subscription and owner every time; a secret only when one is made."""
    state = _bootstrap_state(session)
    secret = None
    if state is None:
        tenant = identity.create_tenant(session, "Default Directory")
        subscription = identity.create_subscription(session, tenant.id, "Default Subscription")
        owner = identity.create_service_principal(session, tenant.id, "control-plane-owner", is_tenant_admin=True)
        authorization.assign(session, tenant.id, f"/subscriptions/{subscription.id}", roles.OWNER,
                             owner.principal.object_id)
        state = {"tenantId": tenant.id, "subscriptionId": subscription.id,
                 "objectId": owner.principal.object_id, "clientId": owner.principal.app_id}
        session.add(SystemState(key=BOOTSTRAP_KEY, value=state))
        secret = owner.secret
    elif reset_secret:
        principal = session.get(ServicePrincipal, state["objectId"])
        secret = identity.add_client_secret(session, principal.app_id, "init --reset-secret")
    return state, secret


def require_bootstrap(session: Session) -> dict[str, Any]:
    state = _bootstrap_state(session)
    if state is None:
        raise NotFound("Run `control-plane init` first.")
    return state


def create_subscription(session: Session, display_name: str) -> dict[str, Any]:
    state = require_bootstrap(session)
    subscription = identity.create_subscription(session, state["tenantId"], display_name)
    authorization.assign(session, state["tenantId"], f"/subscriptions/{subscription.id}", roles.OWNER,
                         state["objectId"])
    return {"subscriptionId": subscription.id, "tenantId": subscription.tenant_id, "displayName": display_name}


def create_tenant(session: Session, display_name: str) -> tuple[dict[str, Any], str]:
    """Another tenant (for a second organisation, or isolation tests): its own subscription and a tenant-admin
    principal owning it, as `init` makes the first. Not idempotent: every call makes a new tenant."""
    display_name = display_name.strip()
    if not display_name or len(display_name) > MAX_TENANT_NAME:
        raise BadRequest(f"The tenant name must be 1 to {MAX_TENANT_NAME} characters.")
    tenant = identity.create_tenant(session, display_name)
    subscription = identity.create_subscription(session, tenant.id, f"{display_name} Subscription")
    admin = identity.create_service_principal(session, tenant.id, f"{display_name}-admin", is_tenant_admin=True)
    authorization.assign(session, tenant.id, f"/subscriptions/{subscription.id}", roles.OWNER,
                         admin.principal.object_id)
    return {"tenantId": tenant.id, "subscriptionId": subscription.id, "objectId": admin.principal.object_id,
            "clientId": admin.principal.app_id, "displayName": display_name}, admin.secret


def create_service_principal(session: Session, display_name: str) -> dict[str, Any]:
    state = require_bootstrap(session)
    new = identity.create_service_principal(session, state["tenantId"], display_name)
    return {"appId": new.principal.app_id, "password": new.secret, "tenant": state["tenantId"],
            "id": new.principal.object_id, "displayName": display_name}


def list_service_principals(session: Session) -> list[dict[str, Any]]:
    state = require_bootstrap(session)
    return [{"appId": p.app_id, "id": p.object_id, "displayName": p.display_name}
            for p in identity.principals_of_tenant(session, state["tenantId"])]


def delete_service_principal(session: Session, identifier: str) -> dict[str, Any]:
    """Undoes `sp create`: the application too (so its secrets go), and the principal's role assignments."""
    state = require_bootstrap(session)
    tenant_id = state["tenantId"]
    principal = next((p for p in identity.principals_of_tenant(session, tenant_id)
                      if identifier.lower() in (p.app_id, p.object_id)), None)
    if principal is None:
        raise NotFound(f"Service principal '{identifier[:100]}' does not exist in tenant '{tenant_id}'.")
    deleted = {"appId": principal.app_id, "id": principal.object_id, "displayName": principal.display_name}
    applications, _ = identity.list_applications(
        session, tenant_id, [identity.DirectoryClause("appId", "eq", principal.app_id)], None, 1)
    if applications:
        identity.delete_application(session, tenant_id, applications[0].application.object_id)
    else:
        identity.delete_service_principal(session, tenant_id, principal.object_id)
    return {**deleted, "deleted": True}
