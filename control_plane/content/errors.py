"""The errors of the content service, each carrying the OCI (or ACR) code and HTTP status its route renders.

Routes turn any ContentError into `{"errors":[{"code","message","detail"}]}` with `.status`; the domain code never
knows about HTTP beyond these two numbers.
"""

from __future__ import annotations

from typing import Any


class ContentError(Exception):
    status = 500
    code = "UNKNOWN"
    default_message = "unknown error"

    def __init__(self, message: str | None = None, detail: Any = None):
        self.message = message or self.default_message
        self.detail = detail
        super().__init__(self.message)


class BlobUnknown(ContentError):
    status, code, default_message = 404, "BLOB_UNKNOWN", "blob unknown to registry"


class BlobUploadUnknown(ContentError):
    status, code, default_message = 404, "BLOB_UPLOAD_UNKNOWN", "blob upload unknown to registry"


class BlobUploadInvalid(ContentError):
    status, code, default_message = 400, "BLOB_UPLOAD_INVALID", "blob upload invalid"


class DigestInvalid(ContentError):
    status, code, default_message = 400, "DIGEST_INVALID", "provided digest did not match uploaded content"


class ManifestBlobUnknown(ContentError):
    status, code, default_message = 400, "MANIFEST_BLOB_UNKNOWN", "manifest references a blob unknown to registry"


class ManifestInvalid(ContentError):
    status, code, default_message = 400, "MANIFEST_INVALID", "manifest invalid"


class ManifestUnknown(ContentError):
    status, code, default_message = 404, "MANIFEST_UNKNOWN", "manifest unknown"


class NameInvalid(ContentError):
    status, code, default_message = 400, "NAME_INVALID", "invalid repository name"


class NameUnknown(ContentError):
    status, code, default_message = 404, "NAME_UNKNOWN", "repository name not known to registry"


class SizeInvalid(ContentError):
    status, code, default_message = 400, "SIZE_INVALID", "provided length did not match content length"


class TagInvalid(ContentError):
    status, code, default_message = 400, "TAG_INVALID", "manifest tag did not match URI"


class TagUnknown(ContentError):
    """ACR's code for a tag that does not exist (the OCI routes answer MANIFEST_UNKNOWN for a manifest by tag)."""

    status, code, default_message = 404, "TAG_UNKNOWN", "the specified tag does not exist"


class PaginationNumberInvalid(ContentError):
    status, code, default_message = 400, "PAGINATION_NUMBER_INVALID", "invalid number of results requested"


class RangeInvalid(ContentError):
    """A chunk that does not start where the upload ends: out of order, repeated, or beaten by a concurrent one.
    `size` is what the upload holds when the service knows it (the route's `Range: 0-<size-1>`)."""

    status, code, default_message = 416, "RANGE_INVALID", "invalid content range"
    size: int | None = None


class Unsupported(ContentError):
    status, code, default_message = 405, "UNSUPPORTED", "the operation is unsupported"


class Disallowed(ContentError):
    """A lock (`changeableAttributes`) refuses the operation, with ACR's code and message."""

    status, code = 405, "REGISTRY_DISALLOWED_OPERATION"
    default_message = ("The operation is disallowed on this registry, repository or image. View troubleshooting "
                       "steps at https://aka.ms/acr/faq/#why-does-my-pull-or-push-request-fail-with-disallowed-"
                       "operation")


class ManifestTooLarge(ContentError):
    status, code, default_message = 413, "SIZE_INVALID", "manifest too large"


class StorageUnavailable(ContentError):
    """The registry's storage account failed; routes add Retry-After, and a retry heals."""

    status, code, default_message = 503, "UNAVAILABLE", "the registry's storage is unavailable, retry later"
