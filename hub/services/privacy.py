"""Sealing candidates' records at rest and erasing them (crypto-shredding)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from hub.domain import sealing
from hub.domain.records import PayloadKind, PersonalIndex, ProfileIndex
from hub.domain.stored import NewRecord, StoredEnvelope
from hub.store.keystore import KeyStore

SEALED_KINDS = (PayloadKind.CANDIDATE_PROFILE, PayloadKind.PERSONAL_DETAILS)


def consent_of(item: NewRecord) -> str | None:
    """The consent record id governing a candidate record (None for other kinds)."""
    idx = item.parsed.index
    if isinstance(idx, ProfileIndex | PersonalIndex):
        return idx.consent_record_id
    return None


class Sealer:
    """Seals candidate records with their data key; opens them for disclosure; erases keys."""

    def __init__(self, keys: KeyStore, master_key: bytes) -> None:
        self.keys = keys
        self.master_key = master_key

    def _make(self, origin: str, consent_id: str) -> bytes:
        return sealing.wrap(self.master_key, sealing.new_data_key(), sealing.key_aad(origin, consent_id))

    def _data_keys(self, wrapped: dict[tuple[str, str], bytes]) -> dict[tuple[str, str], bytes]:
        return {ref: sealing.unwrap(self.master_key, w, sealing.key_aad(*ref)) for ref, w in wrapped.items()}

    def seal(self, items: Sequence[NewRecord]) -> list[NewRecord]:
        """The items with candidate records sealed (others unchanged)."""
        refs = {(it.parsed.origin_id, cid) for it in items if (cid := consent_of(it)) is not None}
        if not refs:
            return list(items)
        keys = self._data_keys(self.keys.ensure(refs, self._make))
        out = []
        for it in items:
            cid = consent_of(it)
            if cid is None:
                out.append(it)
                continue
            key = keys[(it.parsed.origin_id, cid)]
            out.append(
                dataclasses.replace(
                    it,
                    stored_payload=sealing.seal(key, it.parsed.origin_id, cid, it.envelope.payload),
                    digest=sealing.keyed_digest(key, it.envelope.payload),
                )
            )
        return out

    def open(self, envelopes: Sequence[StoredEnvelope]) -> list[StoredEnvelope | None]:
        """Clear envelopes, in order; None for a sealed one whose data key was destroyed (erased)."""
        refs = {sealing.sealed_key(e.payload, e.origin_id) for e in envelopes if sealing.is_sealed(e.payload)}
        keys = self._data_keys(self.keys.wrapped_keys(refs)) if refs else {}
        out: list[StoredEnvelope | None] = []
        for e in envelopes:
            if not sealing.is_sealed(e.payload):
                out.append(e)
                continue
            key = keys.get(sealing.sealed_key(e.payload, e.origin_id))
            out.append(
                None
                if key is None
                else dataclasses.replace(e, payload=sealing.open_sealed(key, e.origin_id, e.payload))
            )
        return out

    def seal_for(self, item: NewRecord, candidate_origin: str, consent_record_id: str) -> NewRecord | None:
        """A record about a candidate (a mobility event, whoever publishes it) sealed with that
        candidate's existing data key; None when the key is gone (the candidate was erased)."""
        ref = (candidate_origin, consent_record_id)
        wrapped = self.keys.wrapped_keys({ref})
        if ref not in wrapped:
            return None
        key = self._data_keys(wrapped)[ref]
        payload = item.envelope.payload
        return dataclasses.replace(
            item,
            stored_payload=sealing.seal(
                key, item.parsed.origin_id, consent_record_id, payload, candidate_origin
            ),
            digest=sealing.keyed_digest(key, payload),
        )

    def pseudonym(self, recipient_id: str, origin_id: str, record_id: str) -> str:
        return sealing.pseudonym(self.master_key, recipient_id, origin_id, record_id)

    def erase(self, origin_id: str, consent_record_id: str) -> bool:
        """Destroy the candidate's data key. True if one existed."""
        return self.keys.destroy(origin_id, consent_record_id)
