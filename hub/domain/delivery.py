"""Why something is delivered; mirrors spehub.v1.DeliveryKind (checked by tests/test_records.py)."""

from __future__ import annotations

from enum import IntEnum


class DeliveryKind(IntEnum):
    RECORD = 1
    WITHDRAWAL = 2
    DELETION = 3
    AUDIT_CHECKPOINT = 4
