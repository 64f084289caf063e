"""Test records: the demo's fictional records, built at the test clock's time."""

from __future__ import annotations

from hub.entrypoints.demo import demo_consent, demo_offer, demo_personal, demo_profile

__all__ = ["demo_consent", "demo_offer", "demo_personal", "demo_profile"]
