"""Domain errors → gRPC status codes, in one table."""

from __future__ import annotations

import grpc

from hub import errors
from hub.domain.records import Reason

STATUS_FOR_ERROR: tuple[tuple[type[errors.HubError], grpc.StatusCode], ...] = (
    (errors.AuthenticationError, grpc.StatusCode.UNAUTHENTICATED),
    (errors.PermissionDeniedError, grpc.StatusCode.PERMISSION_DENIED),
    (errors.NotFoundError, grpc.StatusCode.NOT_FOUND),
    (errors.InvalidRequestError, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.LimitExceededError, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (errors.StoreUnavailableError, grpc.StatusCode.UNAVAILABLE),
    (errors.SignatureError, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.ConfigError, grpc.StatusCode.FAILED_PRECONDITION),
)

# Per-record results carry a canonical code too (RecordResult.code).
STATUS_FOR_REASON: dict[Reason, grpc.StatusCode] = {
    Reason.SIGNATURE_INVALID: grpc.StatusCode.INVALID_ARGUMENT,
    Reason.UNKNOWN_KEY: grpc.StatusCode.INVALID_ARGUMENT,
    Reason.KEY_NOT_VALID: grpc.StatusCode.INVALID_ARGUMENT,
    Reason.SIGNER_NOT_CALLER: grpc.StatusCode.PERMISSION_DENIED,
    Reason.ORIGIN_NOT_SIGNER: grpc.StatusCode.PERMISSION_DENIED,
    Reason.UNKNOWN_PAYLOAD_TYPE: grpc.StatusCode.INVALID_ARGUMENT,
    Reason.MALFORMED_PAYLOAD: grpc.StatusCode.INVALID_ARGUMENT,
    Reason.UNKNOWN_FIELD: grpc.StatusCode.INVALID_ARGUMENT,
    Reason.INVALID_FIELD: grpc.StatusCode.INVALID_ARGUMENT,
    Reason.VERSION_CONFLICT: grpc.StatusCode.ALREADY_EXISTS,
    Reason.STALE_VERSION: grpc.StatusCode.FAILED_PRECONDITION,
    Reason.INVALID_ENVELOPE: grpc.StatusCode.INVALID_ARGUMENT,
    Reason.KEY_REVOKED: grpc.StatusCode.PERMISSION_DENIED,
    Reason.TYPE_NOT_ALLOWED: grpc.StatusCode.PERMISSION_DENIED,
    Reason.INVALID_TRANSITION: grpc.StatusCode.FAILED_PRECONDITION,
    Reason.NOT_ENTITLED: grpc.StatusCode.PERMISSION_DENIED,
    Reason.UNKNOWN_REFERENCE: grpc.StatusCode.NOT_FOUND,
}


def status_for(exc: errors.HubError) -> grpc.StatusCode:
    """The gRPC status for a hub error (INTERNAL if it is not in the table)."""
    for cls, code in STATUS_FOR_ERROR:
        if isinstance(exc, cls):
            return code
    return grpc.StatusCode.INTERNAL
