"""What the portal needs to know, handed in by the composition root (control_plane/app.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class PortalClient:
    """The portal's application registration: a confidential client in the home tenant."""

    client_id: str
    client_secret: str
    tenant_id: str


class Cipher(Protocol):
    """Encrypts the session rows at rest (the service's own key ring)."""

    def encrypt(self, plaintext: str) -> str: ...

    def decrypt(self, token: str) -> str: ...


@dataclass(frozen=True)
class PortalConfig:
    """Where the portal finds the service it is a client of.

    `public_url` is the service's public HTTPS address: ARM, Graph, the token service and (with a `Host` header
    naming the login server) every registry's data plane answer there. `ca_bundle` is the file of the CA that
    signed its certificate (the local CA of `control-plane serve`), or None to use the system's trust store.
    People sign in at the built-in issuer (`<public_url>/<tenant>`), or at `external_authority` (an OIDC issuer
    such as Entra ID or Keycloak, whose tokens the service must then trust, CONTROL_PLANE_TRUSTED_ISSUERS). The
    service accepts one audience from a trusted issuer, `external_audience`, so every token the portal asks that
    authority for (ARM's, and the one it exchanges for the data plane) is for it; `external_ca_bundle` verifies
    that authority's certificate (None: the system's trust store).
    """

    public_url: str
    ca_bundle: str | None
    external_authority: str | None = None
    external_audience: str | None = None
    external_ca_bundle: str | None = None
    arm_resource: str = "https://management.azure.com"
    acr_resource: str = "https://containerregistry.azure.net"
    session_lifetime_seconds: int = 8 * 3600

    @property
    def graph_resource(self) -> str:
        """Graph's resource id is the service's own URL (as az's custom cloud sets it)."""
        return self.public_url

    @property
    def verify(self) -> str | bool:
        return self.ca_bundle or True

    @property
    def authority_verify(self) -> str | bool:
        """How the sign-in (MSAL) verifies the authority's certificate."""
        return (self.external_ca_bundle or True) if self.external_authority else self.verify
