"""Page sizes and opaque keyset page tokens, the same for every listing (AIP-158)."""

from __future__ import annotations

import base64
import binascii

from hub.domain import codes
from hub.errors import InvalidRequestError

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100
MAX_KEY = 2**63 - 1  # the largest 64-bit integer: SQLite and PostgreSQL bigint


def page_size_of(value: int) -> int:
    """The page size to use. Raises InvalidRequestError if negative."""
    if value < 0:
        raise InvalidRequestError("page_size must not be negative", "page_size")
    # AIP-158: a page size over the maximum is coerced, not refused.
    return min(value or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def encode_token(kind: str, *keys: int) -> str:
    """An opaque token for the position after ``keys`` in a listing of ``kind``."""
    text = ":".join([kind, *(str(k) for k in keys)])
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_token(token: str, kind: str, count: int) -> tuple[int, ...] | None:
    """The keys of a token of ``kind`` (None for an empty token, the first page).

    Raises InvalidRequestError for a token this listing did not make.
    """
    if not token:
        return None
    try:
        prefix, *values = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode().split(":")
        if prefix != kind or len(values) != count:
            raise ValueError
        if not all(codes.ascii_digits(v) for v in values):  # int() takes " 7", "7_0", "+7" and "٧"
            raise ValueError
        keys = tuple(int(v) for v in values)
        if not all(0 <= k <= MAX_KEY for k in keys):  # a key the database cannot hold was never ours
            raise ValueError
        return keys
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidRequestError(
            "page_token is not one this listing returned; start again with an empty token", "page_token"
        ) from None
