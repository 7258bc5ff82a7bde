"""The one exception the template language raises, carrying ARM's error code.

The deployments API turns it into ARM's error envelope unchanged, so the code and message are the
ones az and the SDKs show: `InvalidTemplate` for anything wrong with the template or its
parameters, plus the few other codes ARM uses for limits and parameter references.
"""

from __future__ import annotations

from typing import Any

INVALID_TEMPLATE = "InvalidTemplate"
REQUEST_CONTENT_TOO_LARGE = "RequestContentTooLarge"
INVALID_REQUEST_CONTENT = "InvalidRequestContent"
KEY_VAULT_REFERENCE_FAILED = "KeyVaultParameterReferenceSecretRetrieveFailed"


class TemplateError(Exception):
    """A template (or its parameters) is not valid; `code`/`message` are what ARM answers."""

    def __init__(self, code: str, message: str, target: str | None = None,
                 details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.target = target
        self.details = details or []

    def to_error(self) -> dict[str, Any]:
        """The ARM error object (`{"code", "message", ...}`) for the `error` key of a response."""
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.target:
            error["target"] = self.target
        if self.details:
            error["details"] = self.details
        return error


def validation_failed(inner: str) -> TemplateError:
    """ARM wraps every template-validation problem in the same sentence; keep it identical."""
    return TemplateError(INVALID_TEMPLATE, f"Deployment template validation failed: '{inner}'.")
