"""The one place a route asks "who is calling, and may they do this?".

`requires(action)` authenticates the bearer token on every ARM route and records the caller in `flask.g`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from flask import g, request

from control_plane.arm.errors import Unauthorized
from control_plane.authorization.actions import Action
from control_plane.context import app_context
from control_plane.identity import service as identity
from control_plane.identity.tokens import Caller, InvalidToken


def authenticate() -> Caller:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if not header:
        raise Unauthorized("Authentication failed. The 'Authorization' header is missing.",
                           code="AuthenticationFailed")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("Authentication failed. The 'Authorization' header is provided in an invalid format.",
                           code="AuthenticationFailed")
    ctx = app_context()
    try:
        caller = ctx.issuer.validate(token.strip(), ctx.settings.arm_audiences)
    except InvalidToken as exc:
        raise Unauthorized(f"The access token is invalid. {exc}", code="InvalidAuthenticationToken") from None
    with ctx.db.session() as session:
        if identity.principal_by_object_id(session, caller.object_id) is None:
            raise Unauthorized("The access token belongs to a principal that no longer exists.",
                               code="InvalidAuthenticationToken")
    return caller


def check_subscription_tenant(caller: Caller, subscription_tenant_id: str) -> None:
    """A token of one tenant never opens another tenant's subscription (ARM answers 401 here)."""
    if caller.tenant_id != subscription_tenant_id:
        raise Unauthorized("The access token is from the wrong issuer. It must match the tenant associated with "
                           "this subscription. Please use the authority of that tenant to get the token.",
                           code="InvalidAuthenticationTokenTenant")


def requires(action: Action) -> Callable:
    def decorator(view: Callable) -> Callable:
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            g.caller = authenticate()
            g.action = action
            return view(*args, **kwargs)

        wrapper.required_action = action
        return wrapper

    return decorator


def current_caller() -> Caller:
    return g.caller


def subscription_for_caller(session, subscription_id: str):
    """The subscription in the URL, checked against the caller's tenant."""
    subscription = identity.get_subscription(session, subscription_id)
    check_subscription_tenant(current_caller(), subscription.tenant_id)
    return subscription
