"""Tenants, subscriptions and service principals: creation, look-up and client-secret checks."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from control_plane.arm.errors import InvalidSubscriptionId, SubscriptionNotFound
from control_plane.crypto import hash_secret, new_client_secret, verify_secret
from control_plane.db import utcnow
from control_plane.identity.errors import OAuthError
from control_plane.identity.models import Application, ClientSecret, ServicePrincipal, Subscription, Tenant

SECRET_LIFETIME = timedelta(days=365)


@dataclass(frozen=True)
class NewPrincipal:
    principal: ServicePrincipal
    secret: str


def is_guid(value: str) -> bool:
    try:
        return str(uuid.UUID(value)) == value.lower() and len(value) == 36
    except (ValueError, AttributeError, TypeError):
        return False


def create_tenant(session: Session, display_name: str) -> Tenant:
    tenant = Tenant(id=str(uuid.uuid4()), display_name=display_name)
    session.add(tenant)
    session.flush()
    return tenant


def create_subscription(session: Session, tenant_id: str, display_name: str) -> Subscription:
    subscription = Subscription(id=str(uuid.uuid4()), tenant_id=tenant_id, display_name=display_name)
    session.add(subscription)
    session.flush()
    return subscription


def create_application(session: Session, tenant_id: str, display_name: str,
                       identifier_uris: list[str] | None = None) -> Application:
    application = Application(object_id=str(uuid.uuid4()), app_id=str(uuid.uuid4()), tenant_id=tenant_id,
                              display_name=display_name, identifier_uris=identifier_uris or [])
    session.add(application)
    session.flush()
    return application


def create_principal_for(session: Session, application: Application, is_tenant_admin: bool = False
                         ) -> ServicePrincipal:
    principal = ServicePrincipal(object_id=str(uuid.uuid4()), app_id=application.app_id,
                                 tenant_id=application.tenant_id, display_name=application.display_name,
                                 is_tenant_admin=is_tenant_admin)
    session.add(principal)
    session.flush()
    return principal


def create_service_principal(session: Session, tenant_id: str, display_name: str,
                             is_tenant_admin: bool = False) -> NewPrincipal:
    """An application, its service principal and a first secret: what `az ad sp create-for-rbac` makes."""
    application = create_application(session, tenant_id, display_name)
    principal = create_principal_for(session, application, is_tenant_admin)
    return NewPrincipal(principal, add_client_secret(session, principal.app_id))


def add_client_secret(session: Session, app_id: str, display_name: str | None = None,
                      owner_type: str = "application", lifetime: timedelta = SECRET_LIFETIME) -> str:
    return add_client_secret_record(session, app_id, display_name, owner_type, lifetime)[1]


def add_client_secret_record(session: Session, app_id: str, display_name: str | None = None,
                             owner_type: str = "application", lifetime: timedelta = SECRET_LIFETIME
                             ) -> tuple[ClientSecret, str]:
    """A new secret for an application (shown once, stored hashed) and its record."""
    secret = new_client_secret()
    record = ClientSecret(key_id=str(uuid.uuid4()), app_id=app_id, owner_type=owner_type,
                          secret_hash=hash_secret(secret), hint=secret[:3], display_name=display_name,
                          expires_at=utcnow() + lifetime)
    session.add(record)
    session.flush()
    return record, secret


def get_subscription(session: Session, subscription_id: str) -> Subscription:
    """The subscription named in a URL, or the ARM error a client expects."""
    if not is_guid(subscription_id):
        raise InvalidSubscriptionId(subscription_id)
    subscription = session.get(Subscription, subscription_id.lower())
    if subscription is None:
        raise SubscriptionNotFound(subscription_id)
    return subscription


def subscriptions_of_tenant(session: Session, tenant_id: str) -> list[Subscription]:
    return list(session.scalars(
        sa.select(Subscription).where(Subscription.tenant_id == tenant_id).order_by(Subscription.id)
    ))


def principal_by_object_id(session: Session, object_id: str) -> ServicePrincipal | None:
    return session.get(ServicePrincipal, object_id)


def authenticate_client(session: Session, tenant_id: str, client_id: str, client_secret: str) -> ServicePrincipal:
    """The client-credentials check; OAuth errors in Entra's words so MSAL reports them cleanly."""
    if session.get(Tenant, tenant_id) is None:
        raise OAuthError("invalid_request", f"Tenant '{tenant_id}' not found.", 400, aadsts=90002)
    principal = session.scalar(
        sa.select(ServicePrincipal).where(ServicePrincipal.app_id == client_id.lower())
    ) if is_guid(client_id) else None
    if principal is None or principal.tenant_id != tenant_id:
        raise OAuthError("unauthorized_client",
                         f"Application with identifier '{client_id}' was not found in the directory "
                         f"'{tenant_id}'.", 400, aadsts=700016)
    now = utcnow()
    secrets = session.scalars(
        sa.select(ClientSecret).where(ClientSecret.app_id == principal.app_id, ClientSecret.hint == client_secret[:3])
    )
    if not any(s.expires_at > now and verify_secret(client_secret, s.secret_hash) for s in secrets):
        raise OAuthError("invalid_client", "Invalid client secret provided. Ensure the secret being sent in the "
                         "request is the client secret value, not the client secret ID.", 401, aadsts=7000215)
    return principal
