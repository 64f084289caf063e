"""Signing and queueing an SPE's records, and sending the queue to the hub."""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import grpc
from spehub.v1 import (
    consent_pb2,
    envelope_pb2,
    exchange_pb2,
    exchange_pb2_grpc,
)
from tqdm import tqdm

from adapters.base import Tally
from hub.client import seal
from hub.domain import signing
from hub.domain.records import PayloadKind
from hub.domain.signing import load_private_key
from hub.gateway.outbox import FlushReport, Outbox

KIND_BY_MESSAGE = {
    "JobOffer": PayloadKind.JOB_OFFER,
    "CandidateProfile": PayloadKind.CANDIDATE_PROFILE,
    "PersonalDetails": PayloadKind.PERSONAL_DETAILS,
    "Consent": PayloadKind.CONSENT,
}
DONE = ("accepted", "duplicate")


@dataclass(frozen=True)
class FormChange:
    """A field of a consent form version that differs from what it covered when consents were
    first published under it."""

    version: str
    field: str
    before: str
    after: str
    since: str  # when the first consent under the version was signed (ISO 8601)

    def describe(self) -> str:
        return (
            f"consent form {self.version!r} has covered consents published since {self.since[:10]}; "
            f"its {self.field} changed from {self.before or '(none)'!r} to {self.after or '(none)'!r}. "
            "What a used form covers cannot change: restore it, and give the new terms a new form "
            'version (another [consent.forms."…"] table, and that version in the rows whose '
            "candidates agreed to them)"
        )


class Sender:
    """Signs and queues an SPE's records, and sends the queue to the hub."""

    def __init__(self, participant_id: str, key_id: str, signing_key_pem: bytes, outbox: Outbox) -> None:
        self.participant_id = participant_id
        self.key_id = key_id
        self.key = load_private_key(signing_key_pem, f"signing key of {participant_id}")
        self.outbox = outbox
        self.forms: dict[str, dict[str, str]] = {}
        self._fixed: set[str] = set()

    def check_forms(self, forms: dict[str, dict[str, str]]) -> list[FormChange]:
        """Compare the consent forms of the mapping (terms by version) with what each version
        covered when consents were first published under it, and keep them to record each
        version at its first use. Returns the changes (nothing may be signed then): a person's
        consent covers what the form said when they signed it, whatever the mapping says later."""
        fixed = self.outbox.form_terms()
        changes = [
            FormChange(version, field, before, terms.get(field, ""), since)
            for version, terms in sorted(forms.items())
            if version in fixed
            for (was, since) in (fixed[version],)
            for field, before in sorted(was.items())
            if terms.get(field, "") != before
        ]
        self.forms, self._fixed = forms, set(fixed)
        return changes

    def lapsed_consents(self, kept_local: Iterable[Any]) -> list[consent_pb2.Consent]:
        """Withdrawals of the consents this gateway published for candidates whose rows no longer
        carry one (kept local now): the SPE's own records say there is no consent any more, so
        the hub must stop disclosing them. Each is the newest version it signed, as WITHDRAWN."""
        out: list[consent_pb2.Consent] = []
        seen: set[str] = set()
        for record in kept_local:
            consent_id = getattr(record, "consent_record_id", "")
            if not consent_id or consent_id in seen:
                continue
            seen.add(consent_id)
            blob = self.outbox.newest_envelope(PayloadKind.CONSENT.payload_type, consent_id)
            if blob is None:
                continue  # never published: nothing to withdraw
            consent = consent_pb2.Consent.FromString(envelope_pb2.SignedEnvelope.FromString(blob).payload)
            if consent.status != consent_pb2.CONSENT_STATUS_WITHDRAWN:
                consent.status = consent_pb2.CONSENT_STATUS_WITHDRAWN
                out.append(consent)
        return out

    def queue_export(
        self, results: Iterable[object], report: list[str], held: list[object], tally: Tally
    ) -> tuple[int, int, int]:
        """Queue what an adapter converted from one export: the records that may be published,
        then the withdrawals of consents whose rows no longer carry one (``lapsed_consents``).
        Problems go to ``report``, records held for review to ``held``, rows to ``tally``.
        Returns (records queued, unchanged since the last send, consents withdrawn)."""
        kept_local: list[object] = []
        added = self.queue(converted_records(results, report, held, tally, kept_local))
        unchanged = self.unchanged
        withdrawn = self.lapsed_consents(kept_local)
        if withdrawn:
            added += self.queue(withdrawn, progress=False)
        return added, unchanged, len(withdrawn)

    def queue(self, records: Iterable[Any], progress: bool | None = None) -> int:
        """Sign and queue records (in chunks, so memory stays flat). Returns how many were new.

        Versions follow content: a record whose content (all but its version and update time)
        is the newest the gateway signed is skipped and counted in ``unchanged``; changed
        content is signed as the next version, so a corrected re-export is a new version at the
        hub, never a VERSION_CONFLICT."""
        added = 0
        self.unchanged = 0
        chunk: list[tuple[int, str, int, bytes]] = []
        for record in tqdm(
            records, desc="signing", unit="rec", disable=(progress is False and True) or None, file=sys.stderr
        ):
            kind = KIND_BY_MESSAGE[record.DESCRIPTOR.name]
            if kind is PayloadKind.CONSENT:
                self._fix_form(record)
            version = self.outbox.version_for(
                kind.payload_type, record.header.record_id, record.header.version, _content_sha256(record)
            )
            if version is None:
                self.unchanged += 1
                continue
            record.header.version = version
            env = seal(record, kind, self.participant_id, self.key_id, self.key, datetime.now(UTC))
            header = record.header
            chunk.append((kind.payload_type, header.record_id, header.version, env.SerializeToString()))
            if len(chunk) >= 1000:
                added += self.outbox.add(chunk)
                chunk = []
        return added + self.outbox.add(chunk)

    unchanged = 0

    def _fix_form(self, consent: consent_pb2.Consent) -> None:
        """Record the terms of the form a consent is published under, at the version's first use."""
        version = consent.purposes[0].notice_version if consent.purposes else ""
        if version in self.forms and version not in self._fixed:
            self.outbox.fix_form(version, self.forms[version], datetime.now(UTC).isoformat())
            self._fixed.add(version)

    def flush(self, channel: grpc.Channel, batch: int = 200, timeout: float = 60.0) -> FlushReport:
        """Send every pending envelope. Stops at the first link failure, leaving the rest pending."""
        stub = exchange_pb2_grpc.ExchangeServiceStub(channel)
        totals = {"accepted": 0, "duplicate": 0, "rejected": 0}
        sent = 0
        try:
            while True:
                rows = self.outbox.pending(batch)
                if not rows:
                    break
                request = exchange_pb2.PublishRequest(
                    request_id=f"outbox-{rows[0][0]}",
                    envelopes=[_low_s(envelope_pb2.SignedEnvelope.FromString(blob)) for _, blob in rows],
                )
                (response,) = list(stub.Publish(iter([request]), timeout=timeout))
                marks = []
                for (seq, _), result in zip(rows, response.results, strict=True):
                    state = (
                        exchange_pb2.RecordOutcome.Name(result.outcome)
                        .removeprefix("RECORD_OUTCOME_")
                        .lower()
                    )
                    totals[state] += 1
                    reason = (
                        ""
                        if state in DONE
                        else f"{exchange_pb2.RejectionReason.Name(result.reason)}: {result.field}: {result.message}"
                    )
                    marks.append((seq, state, reason))
                self.outbox.mark(marks)
                sent += len(rows)
        except grpc.RpcError as exc:
            return FlushReport(
                sent, **totals, pending=self.outbox.counts().get("pending", 0), link_error=exc.code().name
            )
        return FlushReport(
            sent,
            totals["accepted"],
            totals["duplicate"],
            totals["rejected"],
            pending=self.outbox.counts().get("pending", 0),
        )


def _low_s(envelope: envelope_pb2.SignedEnvelope) -> envelope_pb2.SignedEnvelope:
    """An envelope queued before signatures had one encoding may carry the high-S form, which the
    hub now refuses: sent as its low-S twin, the same signature of the same payload bytes."""
    if signing.high_s(envelope.signature):
        envelope.signature = signing.low_s(envelope.signature)
    return envelope


def _content_sha256(record: Any) -> bytes:
    """SHA-256 of a record's content: its deterministic bytes without version and update time."""
    copy = type(record)()
    copy.CopyFrom(record)
    copy.header.ClearField("version")
    copy.header.ClearField("updated_at")
    return hashlib.sha256(copy.SerializeToString(deterministic=True)).digest()


def converted_records(
    results: Iterable[object],
    report: list[str],
    held: list[object] | None = None,
    tally: Tally | None = None,
    local: list[object] | None = None,
) -> Iterator[object]:
    """The records of an adapter's output that may be published; problems go to ``report``,
    records held for review (an occupation a person must decide) to ``held``, records kept local
    (no consent) to ``local``: neither is ever published. ``tally`` counts the rows."""
    tally = tally if tally is not None else Tally()
    for converted in results:
        state, shown = tally.see(converted)  # type: ignore[arg-type]
        report.extend(shown)
        if state == "local" and local is not None:
            local.append(converted.record)  # type: ignore[attr-defined]
        elif state == "held" and held is not None:
            held.append(converted)
        elif state == "ok":
            yield converted.record  # type: ignore[attr-defined]
