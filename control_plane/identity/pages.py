"""The issuer's browser pages: the authorization endpoint's sign-in page, sign-out, and `/devicelogin`.

Server-rendered HTML with no external asset and a strict Content-Security-Policy (the one style block and the
form_post script carry a per-response nonce; forms may post only here and to the redirect URI). Every form carries a
CSRF token that must equal the `__Host-` cookie set with the page (double submit): without it the answer is 400.
Failed sign-ins say the same for an unknown name and a wrong password. Errors about the client or its redirect URI
are shown here; every later error goes to the (validated) redirect URI, as OAuth 2.0 §4.1.2.1 says.
"""

from __future__ import annotations

import hmac
import secrets
from urllib.parse import urlencode, urlsplit

import sqlalchemy as sa
from flask import Blueprint, Response, make_response, redirect, render_template_string, request

from control_plane.arm.http import base_url
from control_plane.context import app_context
from control_plane.identity import flows, service, signin
from control_plane.identity.errors import OAuthError
from control_plane.identity.models import Application

bp = Blueprint("identity_pages", __name__)

SESSION_COOKIE = "__Host-cp-signin"
CSRF_COOKIE = "__Host-cp-csrf"
CSRF_FIELD = "csrf_token"
PROMPTS = frozenset({"login", "select_account", "none", "consent"})
RESPONSE_MODES = frozenset({"query", "fragment", "form_post"})
# What a failed sign-in says, whichever of name or password was wrong (Entra's page says this too).
BAD_CREDENTIALS = "Your account or password is incorrect."
MESSAGES = {
    50053: "Your account is locked because of too many failed sign-ins. Try again later.",
    50057: "Your account is disabled. Contact your administrator.",
}

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>{{ title }}</title>
<style nonce="{{ nonce }}">
*{box-sizing:border-box}
body{margin:0;font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;background:#f2f2f2;color:#1b1b1b}
main{max-width:440px;margin:8vh auto;padding:32px;background:#fff;box-shadow:0 2px 6px rgba(0,0,0,.2)}
@media (max-width:480px){main{margin:0;min-height:100vh;box-shadow:none;padding:24px 16px}}
h1{font-size:1.5rem;font-weight:600;margin:0 0 16px}
p{line-height:1.4}
label{display:block;margin:16px 0 4px;font-weight:600}
input[type=text],input[type=email],input[type=password]{width:100%;padding:10px;font-size:1rem;border:1px solid #666}
input:focus,button:focus{outline:3px solid #0067b8;outline-offset:2px}
.actions{display:flex;gap:8px;justify-content:flex-end;margin-top:24px;flex-wrap:wrap}
button{padding:10px 20px;font-size:1rem;border:0;background:#0067b8;color:#fff;cursor:pointer;min-width:108px}
button.secondary{background:#ccc;color:#1b1b1b}
.error{color:#a80000;border-left:4px solid #a80000;padding:4px 8px;margin:8px 0}
.muted{color:#555;font-size:.9rem;word-break:break-all}
</style>
</head>
<body>
<main>
<h1>{{ title }}</h1>
{% if error %}<p class="error" id="error" role="alert">{{ error }}</p>{% endif %}
{% if message %}<p id="message">{{ message }}</p>{% endif %}
{% if form == "signin" %}
<form method="post" action="{{ action }}" autocomplete="on">
<input type="hidden" name="{{ csrf_field }}" value="{{ csrf }}">
{% for name, value in hidden %}<input type="hidden" name="{{ name }}" value="{{ value }}">{% endfor %}
{% if client %}<p class="muted">to continue to {{ client }}</p>{% endif %}
<label for="username">Email, phone or user name</label>
<input id="username" name="username" type="text" autocomplete="username" required value="{{ username }}"
 {% if not username %}autofocus{% endif %}>
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required
 {% if username %}autofocus{% endif %}>
<div class="actions">
{% if cancel %}<button class="secondary" id="cancel" name="decision" value="decline" type="submit"
 formnovalidate>Cancel</button>{% endif %}
<button id="signin" type="submit" name="decision" value="signin">Sign in</button>
</div>
</form>
{% elif form == "code" %}
<form method="post" action="{{ action }}" autocomplete="off">
<input type="hidden" name="{{ csrf_field }}" value="{{ csrf }}">
<input type="hidden" name="step" value="code">
<label for="code">Code</label>
<input id="code" name="code" type="text" required autofocus value="{{ code }}" autocapitalize="characters"
 spellcheck="false">
<div class="actions"><button id="next" type="submit">Next</button></div>
</form>
{% elif form == "post" %}
<form method="post" action="{{ action }}" id="response">
{% for name, value in hidden %}<input type="hidden" name="{{ name }}" value="{{ value }}">{% endfor %}
<noscript><div class="actions"><button type="submit">Continue</button></div></noscript>
</form>
<script nonce="{{ nonce }}">document.getElementById("response").submit();</script>
{% endif %}
</main>
</body>
</html>
"""


def _page(status: int = 200, *, form_action_origin: str | None = None, **values) -> Response:
    nonce = secrets.token_urlsafe(16)
    csrf = request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(32)
    defaults = {"title": "Sign in", "error": None, "message": None, "form": None, "hidden": [], "client": None,
                "username": "", "code": "", "cancel": False, "action": request.full_path.rstrip("?")}
    body = render_template_string(PAGE, nonce=nonce, csrf=csrf, csrf_field=CSRF_FIELD, **{**defaults, **values})
    response = make_response(body, status)
    targets = " ".join(["'self'", *([form_action_origin] if form_action_origin else [])])
    response.headers.update({
        "Content-Type": "text/html; charset=utf-8",
        "Content-Security-Policy": f"default-src 'none'; style-src 'nonce-{nonce}'; script-src 'nonce-{nonce}'; "
                                   f"form-action {targets}; frame-ancestors 'none'; base-uri 'none'",
        "X-Frame-Options": "DENY",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-store",
        "Pragma": "no-cache",
    })
    response.set_cookie(CSRF_COOKIE, csrf, secure=True, httponly=True, samesite="Lax", path="/")
    return response


def _csrf_ok() -> bool:
    sent, kept = request.form.get(CSRF_FIELD, ""), request.cookies.get(CSRF_COOKIE, "")
    return bool(sent) and bool(kept) and hmac.compare_digest(sent.encode(), kept.encode())


def _csrf_refused() -> Response:
    return _page(400, title="Sign-in page expired",
                 error="The sign-in request could not be verified (its security token was missing or did not "
                       "match). Go back to the application and sign in again.")


def _error_page(error: OAuthError) -> Response:
    return _page(400, title="Sorry, but we're having trouble signing you in", error=error.description)


def _origin(uri: str) -> str:
    parts = urlsplit(uri)
    return f"{parts.scheme}://{parts.netloc}"


def _lockout() -> signin.Lockout:
    settings = app_context().settings
    return signin.Lockout(settings.signin_lockout_threshold, settings.signin_lockout_seconds)


def _sign_in_message(error: OAuthError) -> str:
    return MESSAGES.get(error.aadsts, BAD_CREDENTIALS)


# -- the authorization endpoint ------------------------------------------------------------------------------


class _Authorize:
    """An authorize request's parameters (from the query string, which the sign-in form posts back to)."""

    def __init__(self, tenant: str):
        args = request.args
        self.tenant = tenant
        self.client_id = args.get("client_id", "")
        self.redirect_uri = args.get("redirect_uri", "")
        self.response_type = args.get("response_type", "")
        self.scope = args.get("scope", "")
        self.state = args.get("state")
        self.nonce = args.get("nonce")
        self.prompt = args.get("prompt", "")
        self.login_hint = args.get("login_hint", "")[:256]
        self.response_mode = args.get("response_mode") or "query"
        self.challenge = args.get("code_challenge")
        self.method = args.get("code_challenge_method")

    def respond(self, params: dict[str, str]) -> Response:
        """Sends `params` (and the state) to the redirect URI in the response mode asked for."""
        if self.state is not None:
            params = {**params, "state": self.state}
        if self.response_mode == "form_post":
            return _page(title="Signing you in", form="post", action=self.redirect_uri, hidden=list(params.items()),
                         form_action_origin=_origin(self.redirect_uri))
        separator = "#" if self.response_mode == "fragment" else ("&" if "?" in self.redirect_uri else "?")
        response = redirect(f"{self.redirect_uri}{separator}{urlencode(params)}", 302)
        response.headers["Cache-Control"] = "no-store"
        return response

    def fail(self, error: str, description: str) -> Response:
        return self.respond({"error": error, "error_description": description})


def _validated(request_: _Authorize) -> tuple[flows.AuthorizeClient | None, Response | None]:
    """(client, None) for a request to go on with, or (None, the answer): an error page or an error redirect."""
    if not request_.client_id:
        return None, _error_page(OAuthError("invalid_request", "The request must contain the parameter "
                                            "'client_id'.", 400, aadsts=900144))
    try:
        with app_context().db.reading() as session:
            client = flows.check_authorize_client(session, request_.tenant, request_.client_id,
                                                  request_.redirect_uri)
    except OAuthError as error:
        return None, _error_page(error)
    if any("\x00" in value for value in request.args.values()):  # no stored text (PostgreSQL's) holds NUL
        return None, request_.fail("invalid_request", "AADSTS90014: A request parameter holds a NUL character.")
    if request_.response_mode not in RESPONSE_MODES:
        request_.response_mode = "query"
        return None, request_.fail("invalid_request", "The response_mode must be query, fragment or form_post.")
    if request_.response_type != "code":
        return None, request_.fail("unsupported_response_type", "AADSTS700054: response_type must be 'code'.")
    if request_.prompt and request_.prompt not in PROMPTS:
        return None, request_.fail("invalid_request", f"AADSTS90023: Invalid prompt value '{request_.prompt[:20]}'.")
    try:
        request_.challenge, request_.method = flows.check_pkce(request_.challenge, request_.method)
    except OAuthError as error:
        return None, request_.fail(error.error, error.description)
    return client, None


def _signin_form(request_: _Authorize, status: int = 200, error: str | None = None,
                 username: str | None = None) -> Response:
    return _page(status, form="signin", error=error, username=username or request_.login_hint,
                 client=request_.client_id, form_action_origin=_origin(request_.redirect_uri))


def _code_for(request_: _Authorize, client: flows.AuthorizeClient, user) -> Response:
    code = flows.issue_code(app_context().db, user, client, request_.scope, request_.nonce, request_.challenge,
                            request_.method)
    return request_.respond({"code": code, "client_info": flows.client_info(user)})


@bp.route("/<tenant_id>/oauth2/v2.0/authorize", methods=["GET"])
def authorize(tenant_id: str):
    request_ = _Authorize(tenant_id)
    client, answer = _validated(request_)
    if answer is not None:
        return answer
    ctx = app_context()
    user = None
    if request_.prompt not in ("login", "select_account"):
        user = flows.session_user(ctx.db, request.cookies.get(SESSION_COOKIE), client.tenant_id, client.client_id)
    if user is not None:
        return _code_for(request_, client, user)
    if request_.prompt == "none":
        return request_.fail("login_required", "AADSTS50058: A silent sign-in request was sent but no user is "
                             "signed in.")
    return _signin_form(request_)


@bp.route("/<tenant_id>/oauth2/v2.0/authorize", methods=["POST"])
def authorize_sign_in(tenant_id: str):
    request_ = _Authorize(tenant_id)
    client, answer = _validated(request_)
    if answer is not None:
        return answer
    if not _csrf_ok():
        return _csrf_refused()
    username, password = request.form.get("username", ""), request.form.get("password", "")
    if not username or not password:
        return _signin_form(request_, 400, "Enter your user name and password.", username)
    ctx = app_context()
    try:
        user = signin.sign_in_with_password(ctx.db, tenant_id, client.client_id, username, password,
                                            request.remote_addr or "", _lockout())
    except OAuthError as error:
        if error.aadsts in (50126, 50053, 50057):
            return _signin_form(request_, 200, _sign_in_message(error), username)
        return _error_page(error)
    response = _code_for(request_, client, user)
    _set_session(response, flows.start_session(ctx.db, user))
    return response


def _set_session(response: Response, secret: str) -> None:
    response.set_cookie(SESSION_COOKIE, secret, secure=True, httponly=True, samesite="Lax", path="/",
                        max_age=int(flows.SESSION_LIFETIME.total_seconds()))


# -- sign-out -------------------------------------------------------------------------------------------------


def _may_return_to(uri: str, client_id: str | None) -> bool:
    """A post-logout redirect only where it cannot be abused: this service's own origin, a loopback address, or a
    redirect URI registered for the client."""
    if not uri or len(uri) > flows.MAX_REDIRECT_URI or urlsplit(uri).scheme not in ("http", "https"):
        return False
    if _origin(uri) == _origin(base_url()) or flows.is_loopback(uri):
        return True
    if not client_id or not service.is_guid(client_id.lower()):
        return False
    with app_context().db.reading() as session:
        application = session.scalar(sa.select(Application).where(Application.app_id == client_id.lower()))
    return application is not None and uri in [*(application.web_redirect_uris or []),
                                               *(application.public_client_redirect_uris or [])]


@bp.route("/<tenant_id>/oauth2/v2.0/logout", methods=["GET", "POST"])
def logout(tenant_id: str):
    values = request.values
    flows.end_session(app_context().db, request.cookies.get(SESSION_COOKIE))
    target = values.get("post_logout_redirect_uri", "")
    if _may_return_to(target, values.get("client_id")):
        state = values.get("state")
        response = redirect(target + (("&" if "?" in target else "?") + urlencode({"state": state})
                                      if state else ""), 302)
    else:
        response = _page(title="You signed out of your account",
                         message="It's a good idea to close all browser windows.")
    response.delete_cookie(SESSION_COOKIE, secure=True, httponly=True, samesite="Lax", path="/")
    response.headers["Cache-Control"] = "no-store"
    return response


# -- the device code flow's page ------------------------------------------------------------------------------


@bp.route("/devicelogin", methods=["GET"])
def devicelogin():
    return _page(title="Enter code", form="code", code=request.args.get("code", "")[:32],
                 message="Enter the code displayed on your app or device.")


@bp.route("/devicelogin", methods=["POST"])
def devicelogin_post():
    if not _csrf_ok():
        return _csrf_refused()
    ctx = app_context()
    code = request.form.get("code", "")
    device = flows.pending_device(ctx.db, code)
    if device is None:
        return _page(400, title="Enter code", form="code", code=code[:32],
                     error="That code didn't work. Check the code and try again.")
    hidden = [("step", "signin"), ("code", device.user_code)]
    if request.form.get("step") != "signin":
        return _page(title="Sign in", form="signin", hidden=hidden, cancel=True, client=device.client_id,
                     message="You are signing in on another device located near you.")
    if request.form.get("decision") == "decline":
        flows.decide_device(ctx.db, device.user_code, None)
        return _page(title="Sign-in cancelled", message="You have declined to sign in to the application on "
                                                        "your device. You may now close this window.")
    username, password = request.form.get("username", ""), request.form.get("password", "")
    try:
        if not username or not password:
            raise OAuthError("invalid_grant", BAD_CREDENTIALS, 400, aadsts=50126)
        user = signin.sign_in_with_password(ctx.db, device.tenant_segment, device.client_id, username, password,
                                            request.remote_addr or "", _lockout())
    except OAuthError as error:
        if error.aadsts in (50126, 50053, 50057):
            return _page(title="Sign in", form="signin", hidden=hidden, cancel=True, client=device.client_id,
                         username=username, error=_sign_in_message(error))
        return _error_page(error)
    if not flows.decide_device(ctx.db, device.user_code, user):
        return _page(400, title="Enter code", form="code", error="That code has expired. Start again on your "
                                                                  "device.")
    return _page(title="You're signed in", message=f"You have signed in to the application on your device as "
                                                   f"{user.user_principal_name}. You may now close this window.")
