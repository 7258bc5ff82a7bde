"""The Docker token service: `/oauth2/token` (Docker's GET and OAuth2 POST forms) and ACR's `/oauth2/exchange`.

The data plane's challenge sends clients here (`realm`) with `service` = the registry's login server (host style) or
the service's public host (path style). Errors carry both the Docker registry's `errors` list (what skopeo, docker
and az print) and this service's `error` envelope.
"""

from __future__ import annotations

from flask import Blueprint, Response, request

from control_plane.arm.http import arm_json
from control_plane.context import app_context
from control_plane.dataplane import service
from control_plane.dataplane.service import TokenServiceError, Unauthorized, Unsupported
from control_plane.dataplane.tokens import AccessToken, RegistryTokens

bp = Blueprint("dataplane", __name__)

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


@bp.errorhandler(TokenServiceError)
def _refused(error: TokenServiceError) -> Response:
    body = {"errors": [{"code": error.code, "message": error.message, "detail": None}],
            "error": {"code": error.code, "message": error.message}}
    return arm_json(body, error.status, NO_STORE)


def _tokens() -> RegistryTokens:
    ctx = app_context()
    return RegistryTokens(ctx.issuer, ctx.settings.public_url, ctx.settings.registry_token_lifetime_seconds)


def _basic_credentials() -> tuple[str, str] | None:
    """The Basic credentials sent, None when there is no Authorization header; 401 for any other kind."""
    if "Authorization" not in request.headers:
        return None
    auth = request.authorization
    if auth is None or auth.type != "basic":
        raise Unauthorized("Only HTTP Basic credentials are accepted here.")
    return auth.username or "", auth.password or ""


def _target(session, raw_service: str) -> service.Service:
    ctx = app_context()
    return service.resolve_service(session, raw_service, ctx.settings.login_server_suffix,
                                   service.public_host(ctx.settings.public_url))


@bp.route("/oauth2/token", methods=["GET"])
def token_get():
    """Docker's token request: Basic credentials (or none), `service`, and any number of `scope` parameters."""
    ctx = app_context()
    raw_service = service.required(request.args.get("service"), "service")
    requested = service.parse_scopes(request.args.getlist("scope"))
    credentials = _basic_credentials()
    tokens = _tokens()
    with ctx.db.session() as session:
        target = _target(session, raw_service)
        login = (service.anonymous() if credentials is None else
                 service.password_login(session, ctx.cipher, tokens, target, *credentials))
        access = service.grants(session, login, target, requested)
    issued = service.access_token(tokens, login, target.audience, access)
    return arm_json({"token": issued.token, "access_token": issued.token, "expires_in": issued.expires_in,
                     "issued_at": issued.issued_at}, 200, NO_STORE)


@bp.route("/oauth2/token", methods=["POST"])
def token_post():
    """The OAuth2 form: `grant_type=password` (username, password; none at all is anonymous, as the SDK sends it
    without a credential) or `refresh_token`, with `service` and `scope` (repeated or space-separated)."""
    ctx = app_context()
    form = request.form
    grant_type = service.required(form.get("grant_type"), "grant_type")
    if grant_type not in ("password", "refresh_token"):
        raise Unsupported(f"The grant type '{grant_type[:64]}' is not supported; use 'password' or 'refresh_token'.")
    raw_service = service.required(form.get("service"), "service")
    requested = service.parse_scopes(form.getlist("scope"))
    tokens = _tokens()
    with ctx.db.session() as session:
        target = _target(session, raw_service)
        if grant_type == "password":
            username, password = form.get("username"), form.get("password")
            if not username and not password and not form.get("refresh_token"):
                credentials = _basic_credentials()
                login = (service.anonymous() if credentials is None else
                         service.password_login(session, ctx.cipher, tokens, target, *credentials))
            else:
                login = service.password_login(session, ctx.cipher, tokens, target,
                                               service.required(username, "username"),
                                               service.required(password, "password"))
        else:
            login = service.refresh_token_login(session, tokens, target,
                                                service.required(form.get("refresh_token"), "refresh_token"))
        access = service.grants(session, login, target, requested)
    issued = service.access_token(tokens, login, target.audience, access)
    return _oauth_response(issued, " ".join(str(s) for s in requested))


def _oauth_response(issued: AccessToken, scope: str) -> Response:
    return arm_json({"access_token": issued.token, "token_type": "Bearer", "expires_in": issued.expires_in,
                     "issued_at": issued.issued_at, "scope": scope}, 200, NO_STORE)


@bp.route("/oauth2/exchange", methods=["POST"])
def exchange():
    """ACR's exchange: `grant_type=access_token`, `service`, `tenant`, `access_token` -> `{"refresh_token"}`; the
    access token may be a trusted external issuer's (people from Entra ID or Keycloak reach the registries their
    roles allow)."""
    ctx = app_context()
    form = request.form
    grant_type = service.required(form.get("grant_type"), "grant_type")
    if grant_type != "access_token":
        raise Unsupported(f"The grant type '{grant_type[:64]}' is not supported; use 'access_token'.")
    raw_service = service.required(form.get("service"), "service")
    aad_token = service.required(form.get("access_token"), "access_token")
    caller, external = service.exchange_caller(ctx.issuer, ctx.external_issuers, aad_token, form.get("tenant"),
                                               ctx.settings.arm_audiences)
    with ctx.db.session() as session:
        target = _target(session, raw_service)
        refresh_token = service.exchange(session, _tokens(), target, caller, external)
    return arm_json({"refresh_token": refresh_token}, 200, NO_STORE)
