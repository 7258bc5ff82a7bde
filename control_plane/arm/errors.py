"""The one exception hierarchy every layer raises, rendered by one handler as the ARM error envelope.

Each class is named after the wire code it produces, so a reader can grep for the code a client saw.
Domain code raises these too: they carry no Flask, only a status, a code, a message and an optional target.
"""

from __future__ import annotations

from typing import Any


class ArmError(Exception):
    status = 500
    code = "InternalServerError"

    def __init__(self, message: str, *, code: str | None = None, target: str | None = None,
                 status: int | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        if status:
            self.status = status
        self.target = target
        self.headers = headers or {}

    def envelope(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.target:
            error["target"] = self.target
        return {"error": error}


class BadRequest(ArmError):
    status = 400
    code = "BadRequest"


class InvalidRequestContent(BadRequest):
    code = "InvalidRequestContent"


class InvalidParameter(BadRequest):
    code = "InvalidParameter"


class InvalidResourceName(BadRequest):
    code = "InvalidResourceName"


class MissingApiVersionParameter(BadRequest):
    code = "MissingApiVersionParameter"

    def __init__(self):
        super().__init__("The api-version query parameter (?api-version=) is required for all requests.")


class InvalidApiVersionParameter(BadRequest):
    code = "InvalidApiVersionParameter"

    def __init__(self, version: str, supported: tuple[str, ...]):
        super().__init__(
            f"The api-version '{version}' is invalid. The supported versions are '{','.join(supported)}'."
        )


class InvalidSubscriptionId(BadRequest):
    code = "InvalidSubscriptionId"

    def __init__(self, value: str):
        super().__init__(f"The provided subscription identifier '{value}' is malformed or invalid.")


class Unauthorized(ArmError):
    status = 401
    code = "AuthenticationFailed"

    def __init__(self, message: str, *, code: str | None = None):
        super().__init__(message, code=code, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})


class Forbidden(ArmError):
    status = 403
    code = "AuthorizationFailed"


class NotFound(ArmError):
    status = 404
    code = "NotFound"


class SubscriptionNotFound(NotFound):
    code = "SubscriptionNotFound"

    def __init__(self, subscription_id: str):
        super().__init__(f"The subscription '{subscription_id}' could not be found.")


class ResourceGroupNotFound(NotFound):
    code = "ResourceGroupNotFound"

    def __init__(self, name: str):
        super().__init__(f"Resource group '{name}' could not be found.")


class ResourceNotFound(NotFound):
    code = "ResourceNotFound"

    def __init__(self, resource_type: str, name: str, resource_group: str):
        super().__init__(
            f"The Resource '{resource_type}/{name}' under resource group '{resource_group}' was not found. "
            "For more details please go to https://aka.ms/ARMResourceNotFoundFix"
        )


class MethodNotAllowed(ArmError):
    status = 405
    code = "MethodNotAllowed"


class Conflict(ArmError):
    status = 409
    code = "Conflict"


class PreconditionFailed(ArmError):
    status = 412
    code = "PreconditionFailed"


class RequestEntityTooLarge(ArmError):
    status = 413
    code = "RequestEntityTooLarge"


class UnsupportedMediaType(ArmError):
    status = 415
    code = "UnsupportedMediaType"


class ServiceUnavailable(ArmError):
    status = 503
    code = "ServiceUnavailable"
