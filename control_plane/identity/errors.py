"""Errors of the token endpoint, in the OAuth 2.0 / Entra shape MSAL and azure-identity parse, and of Graph.

Token-endpoint errors are not ARM errors: it answers `{"error": "invalid_client", "error_description": ...}`.
Graph errors share the ARM envelope but carry Graph's codes (`Request_ResourceNotFound`, ...).
"""

from __future__ import annotations

from control_plane.arm.errors import BadRequest, Conflict, Forbidden, NotFound, Unauthorized


class OAuthError(Exception):
    def __init__(self, error: str, description: str, status: int = 400, aadsts: int | None = None):
        super().__init__(description)
        self.error = error
        self.description = f"AADSTS{aadsts}: {description}" if aadsts else description
        self.status = status
        self.aadsts = aadsts


# -- Microsoft Graph errors: the `{"error": {"code", "message"}}` envelope with Graph's own codes -------------
# az prints `error.message` of any Graph failure; a non-JSON body crashes it (docs/real-clients.md §12.1).

GRAPH_INSUFFICIENT_PRIVILEGES = "Insufficient privileges to complete the operation."


class GraphBadRequest(BadRequest):
    code = "Request_BadRequest"


class GraphUnauthorized(Unauthorized):
    def __init__(self, message: str):
        super().__init__(message, code="InvalidAuthenticationToken")


class GraphForbidden(Forbidden):
    code = "Authorization_RequestDenied"

    def __init__(self, message: str = GRAPH_INSUFFICIENT_PRIVILEGES):
        super().__init__(message)


class GraphNotFound(NotFound):
    code = "Request_ResourceNotFound"

    def __init__(self, object_id: str):
        super().__init__(f"Resource '{object_id[:100]}' does not exist or one of its queried reference-property "
                         "objects are not present.")


class GraphConflict(Conflict):
    code = "Request_MultipleObjectsWithSameKeyValue"
