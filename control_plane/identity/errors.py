"""Errors of the token endpoint, in the OAuth 2.0 / Entra shape MSAL and azure-identity parse.

They are not ARM errors: the token endpoint answers `{"error": "invalid_client", "error_description": ...}`.
"""

from __future__ import annotations


class OAuthError(Exception):
    def __init__(self, error: str, description: str, status: int = 400, aadsts: int | None = None):
        super().__init__(description)
        self.error = error
        self.description = f"AADSTS{aadsts}: {description}" if aadsts else description
        self.status = status
        self.aadsts = aadsts
