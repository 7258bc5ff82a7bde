"""Tenants, subscriptions and service principals: creation, look-up and client-secret checks.

Also the Microsoft Graph directory (applications, service principals, their password credentials) that
`identity/graph.py` serves.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from control_plane.arm.errors import InvalidSubscriptionId, SubscriptionNotFound
from control_plane.crypto import hash_secret, new_client_secret, verify_secret
from control_plane.db import insert_unless_duplicate, is_unique_violation, savepoint, utcnow
from control_plane.identity.errors import GraphBadRequest, GraphConflict, GraphNotFound, OAuthError
from control_plane.identity.models import (
    Application,
    ClientSecret,
    GroupMember,
    ServicePrincipal,
    Subscription,
    Tenant,
    User,
)

SECRET_LIFETIME = timedelta(days=365)
# Users' UPNs end in their tenant's default domain, `<label>.onmicrosoft.local` (Entra: `.onmicrosoft.com`).
DOMAIN_SUFFIX = "onmicrosoft.local"
MAX_DOMAIN_LABEL = 27


@dataclass(frozen=True)
class NewPrincipal:
    principal: ServicePrincipal
    secret: str


def is_guid(value: str) -> bool:
    try:
        return str(uuid.UUID(value)) == value.lower() and len(value) == 36
    except (ValueError, AttributeError, TypeError):
        return False


def domain_label(display_name: str) -> str:
    """`Default Directory` -> `defaultdirectory`: the first label of a tenant's default domain, as Entra makes
    `<label>.onmicrosoft.com` of the name a tenant is created with."""
    return re.sub(r"[^a-z0-9]", "", display_name.lower())[:MAX_DOMAIN_LABEL] or "tenant"


def create_tenant(session: Session, display_name: str) -> Tenant:
    """A tenant with its default domain `<label>.onmicrosoft.local`; when another tenant has that one, the label
    gets the new tenant id's first eight characters (the unique index decides, not a look-up)."""
    tenant_id = str(uuid.uuid4())
    label = domain_label(display_name)
    for domain in (f"{label}.{DOMAIN_SUFFIX}", f"{label}{tenant_id[:8]}.{DOMAIN_SUFFIX}"):
        tenant = Tenant(id=tenant_id, display_name=display_name, default_domain=domain)
        if insert_unless_duplicate(session, tenant):
            return tenant
    raise GraphConflict(f"The default domain '{domain}' is taken; create the tenant again.")


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


# Statements every authenticated request runs, built once: building one costs more than running it on SQLite.
_SUBSCRIPTION_BY_ID = sa.select(Subscription).where(Subscription.id == sa.bindparam("id"))
_PRINCIPAL_EXISTS = sa.union_all(
    sa.select(ServicePrincipal.object_id).where(ServicePrincipal.object_id == sa.bindparam("id")),
    sa.select(User.object_id).where(User.object_id == sa.bindparam("id"), User.account_enabled.is_(True)),
)


@dataclass(frozen=True)
class SubscriptionInfo:
    """A subscription as requests see it: immutable, so one process's access cache can share it between threads."""

    id: str
    tenant_id: str
    display_name: str
    state: str


def get_subscription(session: Session, subscription_id: str) -> SubscriptionInfo:
    """The subscription named in a URL, or the ARM error a client expects."""
    if not is_guid(subscription_id):
        raise InvalidSubscriptionId(subscription_id)
    subscription = session.scalar(_SUBSCRIPTION_BY_ID, {"id": subscription_id.lower()})
    if subscription is None:
        raise SubscriptionNotFound(subscription_id)
    return SubscriptionInfo(subscription.id, subscription.tenant_id, subscription.display_name, subscription.state)


def subscriptions_of_tenant(session: Session, tenant_id: str) -> list[Subscription]:
    return list(session.scalars(
        sa.select(Subscription).where(Subscription.tenant_id == tenant_id).order_by(Subscription.id)
    ))


def principal_by_object_id(session: Session, object_id: str) -> ServicePrincipal | None:
    return session.get(ServicePrincipal, object_id)


def principal_exists(session: Session, object_id: str) -> bool:
    """A service principal, or a user whose account is enabled: the check every authenticated request makes (two
    indexed look-ups of the key in one statement). Disabling a user refuses its tokens at once."""
    return session.scalar(_PRINCIPAL_EXISTS, {"id": object_id}) is not None


def directory_caller(session: Session, object_id: str, tenant_id: str) -> ServicePrincipal | User | None:
    """Who a token of this tenant speaks for: its service principal, or its user while enabled."""
    caller: ServicePrincipal | User | None = session.get(ServicePrincipal, object_id) or session.get(User, object_id)
    if caller is None or caller.tenant_id != tenant_id or (isinstance(caller, User) and not caller.account_enabled):
        return None
    return caller


_CLIENT_CREDENTIALS = (
    sa.select(Tenant.id, ServicePrincipal, ClientSecret.secret_hash, ClientSecret.expires_at)
    .select_from(Tenant)
    .outerjoin(ServicePrincipal, sa.and_(ServicePrincipal.app_id == sa.bindparam("app_id"),
                                         ServicePrincipal.tenant_id == Tenant.id))
    .outerjoin(ClientSecret, sa.and_(ClientSecret.app_id == ServicePrincipal.app_id,
                                     ClientSecret.hint == sa.bindparam("hint")))
    .where(Tenant.id == sa.bindparam("tenant_id"))
)


def authenticate_client(session: Session, tenant_id: str, client_id: str, client_secret: str) -> ServicePrincipal:
    """The client-credentials check; OAuth errors in Entra's words so MSAL reports them cleanly.

    One query: the tenant, its principal of that appId, and the secrets of that appId with the secret's hint (a
    token request is the hottest unauthenticated path, so it makes one round trip, not three).
    """
    # "" matches nothing (app ids are GUIDs, hints three characters). No issued secret holds NUL, and PostgreSQL
    # text cannot: such a secret is simply wrong.
    rows = session.execute(_CLIENT_CREDENTIALS, {
        "tenant_id": tenant_id, "app_id": client_id.lower() if is_guid(client_id) else "",
        "hint": client_secret[:3] if "\x00" not in client_secret else ""}).all()
    if not rows:
        raise OAuthError("invalid_request", f"Tenant '{tenant_id}' not found.", 400, aadsts=90002)
    principal = rows[0].ServicePrincipal
    if principal is None:
        raise OAuthError("unauthorized_client",
                         f"Application with identifier '{client_id}' was not found in the directory "
                         f"'{tenant_id}'.", 400, aadsts=700016)
    now = utcnow()
    if not any(row.secret_hash is not None and row.expires_at > now and verify_secret(client_secret, row.secret_hash)
               for row in rows):
        raise OAuthError("invalid_client", "Invalid client secret provided. Ensure the secret being sent in the "
                         "request is the client secret value, not the client secret ID.", 401, aadsts=7000215)
    return principal


# -- Microsoft Graph: applications, service principals and their password credentials ---------------------------
#
# Every function is scoped to one tenant: another tenant's object is "not found". A secret is listed on the Graph
# object it was added to (`owner_type`), while the token endpoint accepts any live secret of the appId, as Entra
# does. Callers check the caller's privileges; these functions only keep the directory consistent.

APPLICATION = "application"
SERVICE_PRINCIPAL = "servicePrincipal"
GRAPH_SECRET_LIFETIME = timedelta(days=730)  # Graph's default for addPassword without endDateTime

# Other packages keep things per principal (authorization: role assignments); they register how to remove them, so
# deleting a principal never leaves grants behind and identity need not import them.
PrincipalCleanup = Callable[[Session, str], None]
PRINCIPAL_CLEANUPS: list[PrincipalCleanup] = []


def register_principal_cleanup(cleanup: PrincipalCleanup) -> None:
    if cleanup not in PRINCIPAL_CLEANUPS:
        PRINCIPAL_CLEANUPS.append(cleanup)


@dataclass(frozen=True)
class DirectoryClause:
    """One `$filter` condition. property: displayName, appId, id, identifierUris or servicePrincipalNames;
    operator: `eq`, `startswith`, or `any` (the collection holds the value). Entra compares case-insensitively."""

    property: str
    operator: str
    value: str


@dataclass(frozen=True)
class ApplicationView:
    application: Application
    passwords: list[ClientSecret]


@dataclass(frozen=True)
class PrincipalView:
    principal: ServicePrincipal
    application: Application | None
    passwords: list[ClientSecret]

    @property
    def service_principal_names(self) -> list[str]:
        """The appId first: az shows `servicePrincipalNames[0]` as a role assignment's principal name."""
        return [self.principal.app_id, *(self.application.identifier_uris if self.application else [])]


def _fold(value: str) -> str:
    return value.casefold()


def clause_holds(clause: DirectoryClause, properties: dict[str, Any]) -> bool:
    actual = properties.get(clause.property)
    wanted = _fold(clause.value)
    if clause.operator == "any":
        return any(_fold(item) == wanted for item in actual or ())
    if actual is None:
        return False
    if clause.operator == "startswith":
        return _fold(actual).startswith(wanted)
    return _fold(actual) == wanted


def _narrow(query: sa.Select, model: type, clauses: Iterable[DirectoryClause]) -> sa.Select:
    """The conditions SQL can apply cheaply; `clause_holds` re-checks every row, so this need only be a superset."""
    for clause in clauses:
        if clause.property == "appId" and clause.operator == "eq":
            query = query.where(model.app_id == clause.value.lower())
        elif clause.property == "id" and clause.operator == "eq":
            query = query.where(model.object_id == clause.value.lower())
        elif clause.property == "servicePrincipalNames" and is_guid(clause.value):
            query = query.where(model.app_id == clause.value.lower())  # a GUID name can only be the appId
    return query


def _application_properties(application: Application) -> dict[str, Any]:
    return {"id": application.object_id, "appId": application.app_id, "displayName": application.display_name,
            "identifierUris": application.identifier_uris or []}


def _passwords(session: Session, app_ids: list[str], owner_type: str) -> dict[str, list[ClientSecret]]:
    found: dict[str, list[ClientSecret]] = {app_id: [] for app_id in app_ids}
    if app_ids:
        for secret in session.scalars(sa.select(ClientSecret).where(
                ClientSecret.app_id.in_(app_ids), ClientSecret.owner_type == owner_type,
        ).order_by(ClientSecret.created_at, ClientSecret.key_id)):
            found[secret.app_id].append(secret)
    return found


def _application_views(session: Session, applications: list[Application]) -> list[ApplicationView]:
    passwords = _passwords(session, [a.app_id for a in applications], APPLICATION)
    return [ApplicationView(a, passwords[a.app_id]) for a in applications]


def _applications_of(session: Session, principals: list[ServicePrincipal]) -> dict[str, Application]:
    """Each principal's application (same appId, same tenant), by object id of the principal."""
    app_ids = [p.app_id for p in principals]
    applications = {a.app_id: a for a in session.scalars(
        sa.select(Application).where(Application.app_id.in_(app_ids)))} if app_ids else {}
    return {p.object_id: a for p in principals
            if (a := applications.get(p.app_id)) is not None and a.tenant_id == p.tenant_id}


def _principal_views(session: Session, principals: list[ServicePrincipal],
                     applications: dict[str, Application] | None = None) -> list[PrincipalView]:
    applications = _applications_of(session, principals) if applications is None else applications
    passwords = _passwords(session, [p.app_id for p in principals], SERVICE_PRINCIPAL)
    return [PrincipalView(p, applications.get(p.object_id), passwords[p.app_id]) for p in principals]


def list_applications(session: Session, tenant_id: str, clauses: list[DirectoryClause], after: str | None,
                      limit: int) -> tuple[list[ApplicationView], bool]:
    """One page of the tenant's applications matching every clause, by object id after `after`; True if more."""
    query = _narrow(sa.select(Application).where(Application.tenant_id == tenant_id), Application, clauses)
    if after:
        query = query.where(Application.object_id > after)
    found: list[Application] = []
    for application in session.scalars(query.order_by(Application.object_id)):
        if all(clause_holds(c, _application_properties(application)) for c in clauses):
            found.append(application)
            if len(found) > limit:
                break
    return _application_views(session, found[:limit]), len(found) > limit


def list_service_principals(session: Session, tenant_id: str, clauses: list[DirectoryClause], after: str | None,
                            limit: int) -> tuple[list[PrincipalView], bool]:
    """One page of the tenant's service principals matching every clause, by object id after `after`."""
    query = _narrow(sa.select(ServicePrincipal).where(ServicePrincipal.tenant_id == tenant_id), ServicePrincipal,
                    clauses)
    if after:
        query = query.where(ServicePrincipal.object_id > after)
    candidates = list(session.scalars(query.order_by(ServicePrincipal.object_id)))
    applications = _applications_of(session, candidates)
    found: list[ServicePrincipal] = []
    for principal in candidates:
        names = PrincipalView(principal, applications.get(principal.object_id), []).service_principal_names
        properties = {"id": principal.object_id, "appId": principal.app_id, "displayName": principal.display_name,
                      "servicePrincipalNames": names}
        if all(clause_holds(c, properties) for c in clauses):
            found.append(principal)
            if len(found) > limit:
                break
    return _principal_views(session, found[:limit], applications), len(found) > limit


def principals_of_tenant(session: Session, tenant_id: str) -> list[ServicePrincipal]:
    return list(session.scalars(sa.select(ServicePrincipal).where(ServicePrincipal.tenant_id == tenant_id)
                                .order_by(ServicePrincipal.created_at, ServicePrincipal.object_id)))


def _application(session: Session, tenant_id: str, object_id: str) -> Application:
    application = session.get(Application, object_id.lower()) if is_guid(object_id) else None
    if application is None or application.tenant_id != tenant_id:
        raise GraphNotFound(object_id)
    return application


def _principal(session: Session, tenant_id: str, object_id: str) -> ServicePrincipal:
    principal = session.get(ServicePrincipal, object_id.lower()) if is_guid(object_id) else None
    if principal is None or principal.tenant_id != tenant_id:
        raise GraphNotFound(object_id)
    return principal


def get_application(session: Session, tenant_id: str, object_id: str) -> ApplicationView:
    return _application_views(session, [_application(session, tenant_id, object_id)])[0]


def get_service_principal(session: Session, tenant_id: str, object_id: str) -> PrincipalView:
    return _principal_views(session, [_principal(session, tenant_id, object_id)])[0]


APPLICATION_SETTINGS = ("display_name", "identifier_uris", "sign_in_audience", "web_redirect_uris",
                        "public_client_redirect_uris", "is_fallback_public_client")


def create_graph_application(session: Session, tenant_id: str, display_name: str, identifier_uris: list[str],
                             sign_in_audience: str | None, changes: dict[str, Any] | None = None) -> ApplicationView:
    """changes: the other APPLICATION_SETTINGS given (already validated)."""
    application = create_application(session, tenant_id, display_name, identifier_uris)
    if sign_in_audience:
        application.sign_in_audience = sign_in_audience
    for name in ("web_redirect_uris", "public_client_redirect_uris", "is_fallback_public_client"):
        if changes and name in changes:
            setattr(application, name, changes[name])
    session.flush()
    return ApplicationView(application, [])


def update_application(session: Session, tenant_id: str, object_id: str, changes: dict[str, Any]) -> None:
    """changes: any of APPLICATION_SETTINGS (already validated)."""
    application = _application(session, tenant_id, object_id)
    for name in APPLICATION_SETTINGS:
        if name in changes:
            setattr(application, name, changes[name])
    session.flush()


def _refuse_deleting_admin(principal: ServicePrincipal) -> None:
    if principal.is_tenant_admin:
        raise GraphBadRequest(f"The service principal '{principal.app_id}' is the tenant administrator that "
                              "`control-plane init` created; it cannot be deleted.")


def _delete_principal(session: Session, principal: ServicePrincipal) -> None:
    """The principal, the secrets added to it, its group memberships, and what other packages keep for it; its
    tokens stop working."""
    session.execute(sa.delete(ClientSecret).where(ClientSecret.app_id == principal.app_id,
                                                  ClientSecret.owner_type == SERVICE_PRINCIPAL))
    session.execute(sa.delete(GroupMember).where(GroupMember.member_id == principal.object_id))
    for cleanup in PRINCIPAL_CLEANUPS:
        cleanup(session, principal.object_id)
    session.delete(principal)
    session.flush()


def delete_service_principal(session: Session, tenant_id: str, object_id: str) -> None:
    """As in Entra, the application (and the secrets added to it) stays; without a principal it cannot sign in."""
    principal = _principal(session, tenant_id, object_id)
    _refuse_deleting_admin(principal)
    _delete_principal(session, principal)


def delete_application(session: Session, tenant_id: str, object_id: str) -> None:
    """The application, its service principal and every secret of its appId."""
    application = _application(session, tenant_id, object_id)
    principals = list(session.scalars(sa.select(ServicePrincipal).where(
        ServicePrincipal.app_id == application.app_id, ServicePrincipal.tenant_id == tenant_id)))
    for principal in principals:
        _refuse_deleting_admin(principal)
    for principal in principals:
        _delete_principal(session, principal)
    session.execute(sa.delete(ClientSecret).where(ClientSecret.app_id == application.app_id))
    session.delete(application)
    session.flush()


def create_principal_for_app_id(session: Session, tenant_id: str, app_id: str) -> PrincipalView:
    """POST servicePrincipals: the application must be in the tenant; one principal per appId (the DB says so)."""
    application = session.scalar(sa.select(Application).where(
        Application.app_id == app_id.lower(), Application.tenant_id == tenant_id)) if is_guid(app_id) else None
    if application is None:
        # az create-for-rbac retries on " does not reference " (replication delay in Entra); we never need it to.
        raise GraphBadRequest(f"The appId '{app_id[:100]}' of the service principal does not reference a valid "
                              "application object.")
    try:
        with savepoint(session):
            principal = create_principal_for(session, application)
    except IntegrityError as exc:
        if not is_unique_violation(exc):
            raise
        raise GraphConflict("Another object with the same value for property servicePrincipalNames already "
                            "exists.") from None
    return PrincipalView(principal, application, [])


def _credential_owner(session: Session, tenant_id: str, owner_type: str, object_id: str) -> str:
    """The appId whose secrets the Graph object (application or service principal) holds."""
    if owner_type == APPLICATION:
        return _application(session, tenant_id, object_id).app_id
    return _principal(session, tenant_id, object_id).app_id


def add_password(session: Session, tenant_id: str, owner_type: str, object_id: str, display_name: str | None,
                 start: datetime | None, end: datetime | None) -> tuple[ClientSecret, str]:
    """addPassword: a new secret on the object (shown once), valid from start (default now) until end."""
    app_id = _credential_owner(session, tenant_id, owner_type, object_id)
    start = start or utcnow()
    end = end or start + GRAPH_SECRET_LIFETIME
    if end <= start:
        raise GraphBadRequest("The password credential's endDateTime must be later than its startDateTime.")
    if end <= utcnow():
        raise GraphBadRequest("The password credential's endDateTime must be in the future.")
    record, secret = add_client_secret_record(session, app_id, display_name, owner_type)
    record.created_at, record.expires_at = start, end
    session.flush()
    return record, secret


def remove_password(session: Session, tenant_id: str, owner_type: str, object_id: str, key_id: str) -> None:
    """removePassword: the secret stops working at once (the token endpoint no longer finds it)."""
    app_id = _credential_owner(session, tenant_id, owner_type, object_id)
    removed = session.execute(sa.delete(ClientSecret).where(
        ClientSecret.key_id == key_id.lower(), ClientSecret.app_id == app_id, ClientSecret.owner_type == owner_type,
    )).rowcount if is_guid(key_id) else 0
    if not removed:
        raise GraphBadRequest(f"No password credential with keyId '{key_id[:100]}' exists on object '{object_id}'.")


def directory_objects(session: Session, tenant_id: str, ids: list[str],
                      types: set[str]) -> list[ApplicationView | PrincipalView]:
    """getByIds: the tenant's objects among `ids` whose Graph type (lower-cased) is in `types`; unknown ids
    are left out."""
    wanted = list(dict.fromkeys(i.lower() for i in ids if is_guid(i)))
    found: dict[str, ApplicationView | PrincipalView] = {}
    if wanted and SERVICE_PRINCIPAL.lower() in types:
        principals = session.scalars(sa.select(ServicePrincipal).where(
            ServicePrincipal.object_id.in_(wanted), ServicePrincipal.tenant_id == tenant_id))
        found.update((v.principal.object_id, v) for v in _principal_views(session, list(principals)))
    if wanted and APPLICATION.lower() in types:
        applications = session.scalars(sa.select(Application).where(
            Application.object_id.in_(wanted), Application.tenant_id == tenant_id))
        found.update((v.application.object_id, v) for v in _application_views(session, list(applications)))
    return [found[i] for i in wanted if i in found]
