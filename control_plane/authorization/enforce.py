"""The one place a route asks "who is calling, and may they do this?".

`requires(action)` authenticates the bearer token on every ARM route, resolves the subscription in its URL, and
allows the action on the route's scope only when a role assignment grants it (403 AuthorizationFailed otherwise).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TypeVar

from flask import g, request

from control_plane.arm.errors import ArmError, Forbidden, Unauthorized
from control_plane.authorization import policy
from control_plane.authorization.access_cache import read_generation
from control_plane.authorization.actions import Action
from control_plane.config import READS
from control_plane.context import app_context
from control_plane.identity import service as identity
from control_plane.identity.tokens import Caller, InvalidToken
from control_plane.throttling import Throttler, kind_of

T = TypeVar("T")


def _token_caller() -> tuple[Caller, object | None]:
    """The token's caller, and the trusted external issuer it comes from (None: the built-in one); no database."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if not header:
        raise Unauthorized("Authentication failed. The 'Authorization' header is missing.",
                           code="AuthenticationFailed")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("Authentication failed. The 'Authorization' header is provided in an invalid format.",
                           code="AuthenticationFailed")
    ctx = app_context()
    token = token.strip()
    # A token whose `iss` is a trusted external issuer (CONTROL_PLANE_TRUSTED_ISSUERS) is checked against that
    # issuer's keys; every other token must be the built-in issuer's.
    external = ctx.external_issuers.issuer_of(token)
    try:
        if external is not None:
            caller = ctx.external_issuers.validate(token, external)
        else:
            caller = ctx.issuer.validate(token, ctx.settings.arm_audiences)
    except InvalidToken as exc:
        raise Unauthorized(f"The access token is invalid. {exc}", code=exc.code) from None
    return caller, external


def _check_principal(session, caller: Caller, external: object | None) -> None:
    """Checked on every call (through the access cache, which a change empties): a deleted principal's tokens stop
    working at once."""
    principal = _cached(("principal", caller.object_id), lambda: identity.principal_exists(session, caller.object_id))
    if external is None and not principal:
        raise Unauthorized("The access token belongs to a principal that no longer exists.",
                           code="InvalidAuthenticationToken")
    if external is not None and principal:
        # External principals live in their issuer, not in our table; one that claims a built-in principal's
        # object id would inherit that principal's role assignments.
        raise Unauthorized("The access token names a principal of this service's own directory; an external "
                           "issuer cannot speak for it.", code="InvalidAuthenticationToken")


def check_subscription_tenant(caller: Caller, subscription_tenant_id: str) -> None:
    """A token of one tenant never opens another tenant's subscription (ARM answers 401 here)."""
    if caller.tenant_id != subscription_tenant_id:
        raise Unauthorized("The access token is from the wrong issuer. It must match the tenant associated with "
                           "this subscription. Please use the authority of that tenant to get the token.",
                           code="InvalidAuthenticationTokenTenant")


def default_scope(kwargs: dict) -> str | None:
    """The ARM scope a route acts on, read from its URL parameters (None: a tenant-level route)."""
    subscription_id = kwargs.get("subscription_id")
    if kwargs.get("registry_name"):
        return policy.registry_scope(subscription_id, kwargs["group_name"], kwargs["registry_name"])
    if kwargs.get("group_name"):
        return policy.group_scope(subscription_id, kwargs["group_name"])
    if subscription_id and kwargs.get("scope"):
        return f"{policy.subscription_scope(subscription_id)}/{kwargs['scope']}"
    if subscription_id:
        return policy.subscription_scope(subscription_id)
    if kwargs.get("scope"):
        return "/" + kwargs["scope"].strip("/")
    return None


def requires(action: Action, *, filtered: bool = False,
             scope: Callable[[dict], str | None] = default_scope) -> Callable:
    """Authenticate, resolve the subscription, then allow the action on the route's scope or answer 403.

    `filtered` routes (lists) are refused only when nothing under their scope is allowed; they return only
    what the caller may read.
    """

    def decorator(view: Callable) -> Callable:
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            caller, external = _token_caller()
            target = scope(kwargs)
            ctx = app_context()
            # One read-only unit of work for everything the decision needs: principal, subscription, role
            # assignments — from the process's access cache while the database's access generation says it holds.
            with ctx.db.reading() as session:
                g.access_generation = read_generation(session)
                _check_principal(session, caller, external)
                g.caller, g.action = caller, action
                subscription_id = kwargs.get("subscription_id") or _subscription_in(target)
                if subscription_id:
                    subscription_for_caller(session, subscription_id)
                g.permissions = _cached(("permissions", caller.object_id, caller.tenant_id),
                                        lambda: policy.permissions_of(session, caller.object_id, caller.tenant_id))
                _throttle(ctx.throttler, caller, subscription_id)
                if target is not None and _refused(g.permissions, action, target, filtered):
                    raise Forbidden(policy.denial_message(caller.client_name, caller.object_id, action.name, target))
                if kind_of(request.method) == READS:
                    # A read's route shares this unit of work and its pooled connection. A write's route opens its
                    # own transaction once this is closed, so no request holds two connections at a time.
                    return view(*args, **kwargs)
            return view(*args, **kwargs)

        wrapper.required_action = action
        return wrapper

    return decorator


def _throttle(throttler: Throttler | None, caller: Caller, subscription_id: str | None) -> None:
    """ARM's request limits: per subscription for subscription calls, per tenant for tenant-level ones."""
    if throttler is None:
        return
    kind = kind_of(request.method)
    scope, owner = ("subscription", subscription_id.lower()) if subscription_id else ("tenant", caller.tenant_id)
    decision = throttler.take(scope, owner, kind)
    header = f"x-ms-ratelimit-remaining-{scope}-{kind}"
    if not decision.allowed:
        raise ArmError(f"Number of '{kind}' requests for {scope} '{owner}' actor '{caller.object_id}' exceeded. "
                       f"Please try again after '{decision.retry_after}' seconds after additional tokens are "
                       "available.", code=f"{scope.capitalize()}RequestsThrottled", status=429,
                       headers={"Retry-After": str(decision.retry_after), header: "0"})
    g.response_headers = {header: str(decision.remaining)}


def _refused(permissions: policy.Permissions, action: Action, target: str, filtered: bool) -> bool:
    if filtered:
        return permissions.allowed_below(action.name, target) == []
    return not permissions.allows(action.name, target)


def _subscription_in(scope: str | None) -> str | None:
    parts = (scope or "").strip("/").split("/")
    return parts[1] if len(parts) >= 2 and parts[0].lower() == "subscriptions" else None


def may_read(resource_type: str, resource_id: str) -> bool:
    """For generic resource lists: every ARM resource type's read action is `<type>/read`."""
    return g.permissions.allows(f"{resource_type}/read", resource_id)


def visible_below(action: Action, scope: str) -> list[str] | None:
    """For lists: None when the caller may see everything under the scope, else the scopes they may see."""
    return g.permissions.allowed_below(action.name, scope)


def current_caller() -> Caller:
    return g.caller


def subscription_for_caller(session, subscription_id: str) -> identity.SubscriptionInfo:
    """The subscription in the URL, checked against the caller's tenant (from the access cache)."""
    subscription = _cached(("subscription", subscription_id.lower()),
                           lambda: identity.get_subscription(session, subscription_id))
    check_subscription_tenant(current_caller(), subscription.tenant_id)
    return subscription


def _cached(key: tuple, load: Callable[[], T]) -> T:
    """`load()`, or what the process's access cache holds for `key` at the generation this request read."""
    return app_context().access_cache.get(g.get("access_generation"), key, load)
