"""The one error hierarchy of the hub.

Messages are written for the operator of an SPE system: they name the record,
the field and what to do, and never carry personal data or secrets. The API
layer maps each class to a gRPC status in one table (hub.api.errors).
"""

from __future__ import annotations


class HubError(Exception):
    """Base of every error the hub raises on purpose."""


class ConfigError(HubError):
    """The settings or the files they name are missing, invalid or unsafe."""


class AuthenticationError(HubError):
    """The caller could not be identified as a registered, active participant."""


class PermissionDeniedError(HubError):
    """The caller is identified but may not do this."""


class InvalidRequestError(HubError):
    """A request (not a record) is malformed: a filter, a page token, a batch."""

    def __init__(self, message: str, field: str = "") -> None:
        super().__init__(message)
        self.field = field


class LimitExceededError(HubError):
    """A request is over a configured limit (batch size, page size)."""


class StoreUnavailableError(HubError):
    """The database could not be reached or did not answer; nothing was written."""


class StoreConflictError(StoreUnavailableError):
    """Another hub process wrote the same row first (a unique key); nothing was written, a retry sees it."""


class SignatureError(HubError):
    """A signature or a key could not be used or did not verify."""


class NotFoundError(HubError):
    """Nothing the caller may see has that name (also for what exists but is not the caller's to see)."""


class RateLimitedError(LimitExceededError):
    """Too many requests: retry after ``retry_after`` seconds."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after
