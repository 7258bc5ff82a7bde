"""What `control-plane init`, `subscription create` and `sp create` do: the first tenant and its owner."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from control_plane.arm.errors import NotFound
from control_plane.authorization import roles
from control_plane.authorization import service as authorization
from control_plane.identity import service as identity
from control_plane.identity.models import ServicePrincipal, SystemState

BOOTSTRAP_KEY = "bootstrap"


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


def create_service_principal(session: Session, display_name: str) -> dict[str, Any]:
    state = require_bootstrap(session)
    new = identity.create_service_principal(session, state["tenantId"], display_name)
    return {"appId": new.principal.app_id, "password": new.secret, "tenant": state["tenantId"],
            "id": new.principal.object_id, "displayName": display_name}
