"""Signing people in with MSAL (authorization code + PKCE, as a confidential client) and getting their tokens for
ARM, Graph and the registries' token service. The token cache lives, serialized, in the server-side session."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import msal
import requests

from control_plane.portal.api import TIMEOUT, http_session
from control_plane.portal.config import PortalClient, PortalConfig
from control_plane.portal.sessions import PortalSession


class SignInRequired(Exception):
    """No usable token: the person must sign in (again)."""


class SignIn:
    def __init__(self, config: PortalConfig, client: PortalClient | Callable[[], PortalClient]):
        self.config = config
        self._client = client
        self.http_cache: dict = {}  # OIDC discovery, fetched once per process rather than once per request
        self._end_session: str | None = None

    @property
    def client(self) -> PortalClient:
        if callable(self._client):
            self._client = self._client()
        return self._client

    @property
    def authority(self) -> str:
        return self.config.external_authority or f"{self.config.public_url}/{self.client.tenant_id}"

    def _app(self, cache: msal.SerializableTokenCache) -> msal.ConfidentialClientApplication:
        where: dict[str, Any] = ({"oidc_authority": self.config.external_authority} if self.config.external_authority
                                 else {"authority": self.authority, "instance_discovery": False})
        return msal.ConfidentialClientApplication(
            self.client.client_id, client_credential=self.client.client_secret, token_cache=cache,
            http_client=http_session(self.config.authority_verify), http_cache=self.http_cache, **where)

    @staticmethod
    def _cache(session: PortalSession) -> msal.SerializableTokenCache:
        cache = msal.SerializableTokenCache()
        if session.get("cache"):
            cache.deserialize(session.get("cache"))
        return cache

    @staticmethod
    def _keep(session: PortalSession, cache: msal.SerializableTokenCache) -> None:
        if cache.has_state_changed:
            session.set("cache", cache.serialize())

    def scope(self, resource: str) -> str:
        """`<resource>/.default`; at an external authority, the one audience the service accepts from it."""
        return f"{(self.config.external_audience or resource).rstrip('/')}/.default"

    def begin(self, session: PortalSession, redirect_uri: str) -> str:
        """Starts the authorization code flow (state, nonce, PKCE verifier kept in the session); the URL to go to."""
        flow = self._app(self._cache(session)).initiate_auth_code_flow(
            [self.scope(self.config.arm_resource)], redirect_uri=redirect_uri)
        session.set("flow", flow)
        return flow["auth_uri"]

    def finish(self, session: PortalSession, answer: dict[str, str]) -> dict:
        """Redeems the code the issuer sent back; the ID token's claims, or SignInRequired with the issuer's words."""
        flow = session.pop("flow")
        if not flow:
            raise SignInRequired("The sign-in was not started here or has already been used; please sign in again.")
        cache = self._cache(session)
        try:
            result = self._app(cache).acquire_token_by_auth_code_flow(flow, answer)
        except ValueError:  # state mismatch: an answer to some other sign-in
            raise SignInRequired("The sign-in answer does not match the sign-in started here.") from None
        if "error" in result:
            raise SignInRequired(result.get("error_description") or result["error"])
        claims = result.get("id_token_claims") or {}
        accounts = self._app(cache).get_accounts()
        if not accounts:
            raise SignInRequired("The issuer answered without an account.")
        self._keep(session, cache)
        session.set("account", accounts[0]["home_account_id"])
        # An external issuer without `oid` (Keycloak, Dex) names the person by `sub`, as the service then does.
        oid = claims.get("oid") or (claims.get("sub") if self.config.external_authority else "") or ""
        session.set("user", {"name": claims.get("name") or claims.get("preferred_username") or "",
                             "username": claims.get("preferred_username") or "", "oid": oid})
        return claims

    def token(self, session: PortalSession, resource: str) -> str:
        """An access token for `resource` from the cache, refreshed with the refresh token when it has expired."""
        home = session.get("account")
        if not home:
            raise SignInRequired("Please sign in.")
        cache = self._cache(session)
        app = self._app(cache)
        account = next((a for a in app.get_accounts() if a["home_account_id"] == home), None)
        if account is None:
            raise SignInRequired("Please sign in.")
        result = app.acquire_token_silent([self.scope(resource)], account=account)
        self._keep(session, cache)
        if not result or "access_token" not in result:
            raise SignInRequired("Your sign-in has expired; please sign in again.")
        return result["access_token"]

    def logout_url(self, post_logout_redirect_uri: str) -> str:
        """The issuer's end-session URL, so the issuer's own browser session ends too."""
        # client_id (OIDC RP-Initiated Logout): an issuer returns only to a URI registered for the client.
        query = urlencode({"post_logout_redirect_uri": post_logout_redirect_uri, "client_id": self.client.client_id})
        if not self.config.external_authority:
            return f"{self.authority}/oauth2/v2.0/logout?{query}"
        if self._end_session is None:  # an OIDC issuer names it in its discovery document; asked until it answers
            try:
                document = http_session(self.config.authority_verify).get(
                    f"{self.authority}/.well-known/openid-configuration", timeout=TIMEOUT).json()
            except (requests.RequestException, ValueError):
                document = None
            if isinstance(document, dict):
                self._end_session = str(document.get("end_session_endpoint") or "")
        # Without one, only the portal's own session ends.
        return f"{self._end_session}?{query}" if self._end_session else post_logout_redirect_uri
