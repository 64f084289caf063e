"""``spe-hub audit …`` and ``spe-hub deletions …``: the operator's checks on the audit log and erasures."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hub.bootstrap import open_store, overdue_deletions
from hub.clock import system_clock
from hub.config import Settings
from hub.domain.tokens import HubKeyRing
from hub.services.audit import AuditService, read_witness
from hub.store.engine import Store


def _service() -> tuple[Settings, Store, AuditService]:
    settings, store = open_store()
    return settings, store, AuditService(store, HubKeyRing.load(settings.token_keys_dir), system_clock)


def run_audit(args: argparse.Namespace) -> int:
    _, _, audit = _service()
    if args.action == "verify":
        try:
            witnessed = [w for path in args.witness for w in read_witness(path)]
        except (OSError, ValueError) as exc:
            print(f"spe-hub audit: cannot read a witness file: {exc}", file=sys.stderr)
            return 2
        count, problems = audit.verify(witnessed)
        for p in problems:
            print(f"TAMPERED: {p}")
        against = f" and {len(witnessed)} witnessed checkpoint(s)" if args.witness else ""
        print(
            f"{count} entries checked{against}: {'intact' if not problems else f'{len(problems)} problem(s)'}"
        )
        return 1 if problems else 0
    if args.action == "checkpoint":
        cp = audit.checkpoint()
        print(f"checkpoint at entry {cp.seq}" if cp else "nothing new since the last checkpoint")
        return 0
    from hub.domain.directory import Participant, ParticipantKind

    origin = Participant(args.origin, "", ParticipantKind.ORIGIN_SPE, args.origin)
    print(f"Who received or saw the records of candidate {args.consent_record_id!r} of {args.origin!r}:")
    for e in audit.subject_report(origin, args.consent_record_id):
        at = datetime.fromtimestamp(e.at_us / 1_000_000, UTC).isoformat(timespec="seconds")
        purpose = f" for {e.draft.purpose}" if e.draft.purpose else ""
        print(
            f"  {at}  {e.draft.actor:24} {e.draft.action:20} {e.draft.record_id} v{e.draft.version}{purpose}"
        )
    return 0


def run_deletions(args: argparse.Namespace) -> int:
    settings, store, _ = _service()
    overdue = overdue_deletions(store, system_clock, timedelta(hours=settings.deletion_ack_hours))
    if not overdue:
        print(f"no deletion notice is unacknowledged after {settings.deletion_ack_hours} h")
        return 0
    for recipient, n in sorted(overdue.items()):
        print(f"{recipient:24} {n} deletion notice(s) unacknowledged after {settings.deletion_ack_hours} h")
    return 1


def add_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser(
        "audit", help="verify the audit log, sign a checkpoint, or report on one candidate"
    )
    actions = parser.add_subparsers(dest="action", required=True)
    p = actions.add_parser(
        "verify",
        help="check the hash chain, the signed checkpoints and the checkpoints participants kept "
        "(exit 1 if tampered, 2 if a witness file cannot be read)",
    )
    p.add_argument(
        "--witness",
        type=Path,
        nargs="+",
        default=[],
        metavar="FILE",
        help="witness.jsonl files of participants' gateways: the log must agree with every checkpoint in them",
    )
    actions.add_parser("checkpoint", help="sign the head of the log now")
    p = actions.add_parser("subject", help="who received or saw a candidate's records (ids only)")
    p.add_argument("origin")
    p.add_argument("consent_record_id")
    parser.set_defaults(func=run_audit)
    parser = sub.add_parser("deletions", help="deletion notices recipients have not acknowledged in time")
    deletions = parser.add_subparsers(dest="action", required=True)
    deletions.add_parser("overdue", help="list them (exit 1 if any)")
    parser.set_defaults(func=run_deletions)
