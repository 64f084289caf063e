"""``spe-hub gateway``: the options and the printing around the gateway package (hub.gateway)."""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
from pathlib import Path

import grpc

from adapters.base import AdapterError, Tally
from hub.entrypoints.options import adapter_help, add_hub_option
from hub.gateway import (
    GatewayError,
    Inbox,
    Outbox,
    Receiver,
    ReviewQueue,
    Sender,
    fetch_directory,
)


def run(args: argparse.Namespace) -> int:
    """``spe-hub gateway send``: convert, sign and queue the files, then send the queue."""
    from adapters.tabular import TabularAdapter
    from hub.entrypoints.adapters import build_adapter, load_codelists

    a = args
    adapter = None
    if a.files:
        lists = load_codelists(a.codelists)
        if lists is None:
            return 2
        key = base64.b64decode(Path(a.subject_key_file).read_text().strip()) if a.subject_key_file else b""
        try:
            adapter = build_adapter(
                a.adapter, lists, a.participant, a.offer_target, a.mapping, key, a.country
            )
        except AdapterError as exc:
            print(f"spe-hub gateway: {exc}", file=sys.stderr)
            return 2
    folder = Path(a.pki) / "participants" / a.participant
    try:
        key_id, signing_key = (
            (folder / "key-id").read_text().strip(),
            (folder / "signing-key.pem").read_bytes(),
        )
    except OSError:
        print(f"spe-hub gateway: no signing key of {a.participant} in {folder} (see --pki)", file=sys.stderr)
        return 2
    outbox = Outbox(Path(a.outbox or f"var/gateway/{a.participant}.sqlite3"))
    gateway = Sender(a.participant, key_id, signing_key, outbox)
    if isinstance(adapter, TabularAdapter):
        # A form version consents were published under covers what it covered then: an edit of
        # it in the mapping stops the run before anything is signed (docs/consent.md).
        changes = gateway.check_forms(adapter.consent_forms())
        for change in changes:
            where = adapter.mapping.where(f"consent.forms.{change.version}.{change.field}")
            print(f"spe-hub gateway: {where}: {change.describe()}", file=sys.stderr)
        if changes:
            outbox.close()
            return 2
    review = ReviewQueue(outbox)
    report: list[str] = []
    refused_rows = 0
    if adapter is not None and lists is not None:
        lists.use_aliases(review.aliases())  # the SPE's reviewed answers win over the resolver
        for name in a.files:
            held: list[object] = []
            tally = Tally()
            try:
                added, unchanged, withdrawn = gateway.queue_export(
                    adapter.read(Path(name)), report, held, tally
                )
            except AdapterError as exc:  # the mapping does not fit the export: nothing was read
                print(f"spe-hub gateway: {exc}", file=sys.stderr)
                outbox.close()
                return 2
            if withdrawn:  # a candidate whose row lost its consent: the published one is withdrawn
                print(f"{name}: {withdrawn} consent(s) withdrawn: their rows no longer carry one")
            waiting = review.hold(held)
            refused_rows += tally.refused
            print(
                f"{name}: {tally.rows} row(s): {tally.refused} refused, {tally.held} held for review, "
                f"{tally.local} kept local (no consent); {added} new record(s) signed and queued"
                + (f", {unchanged} unchanged since the last send" if unchanged else "")
                + (f"; {waiting} held for review (spe-hub gateway review)" if held else "")
            )
    for line in report:
        print(f"  {line}")
    with _channel(a) as channel:
        result = gateway.flush(channel, batch=a.batch)
    print(
        f"sent {result.sent}: {result.accepted} accepted, {result.duplicate} already at the hub, "
        f"{result.rejected} refused; {result.pending} pending"
        + (f" (link: {result.link_error}; run again to send the rest)" if result.link_error else "")
    )
    for record_id, reason in outbox.rejected():
        print(f"  refused {record_id}: {reason}")
    outbox.close()
    # Exit codes (docs/onboarding.md): 1 the hub refused records or the link failed, 3 rows of
    # the export could not be converted, 0 neither.
    if result.link_error or result.rejected:
        return 1
    return 3 if refused_rows else 0


def run_review(args: argparse.Namespace) -> int:
    """``spe-hub gateway review``: list the records held for their occupation, or decide one."""
    from hub.entrypoints.adapters import load_codelists

    a = args
    outbox = Outbox(Path(a.outbox or f"var/gateway/{a.participant}.sqlite3"))
    review = ReviewQueue(outbox)
    lists = load_codelists(a.codelists)
    if lists is None:
        return 2
    lists.use_aliases(review.aliases())
    try:
        if a.accept is None:
            rows = review.held()
            if not rows:
                print("nothing is held for review")
            for review_id, location, field, title, lang in rows:
                print(f"#{review_id} {location} {field}: {title!r}")
                for n, (isco, uri, label, score) in enumerate(
                    lists.resolve_title(title, lang).suggestions, 1
                ):
                    print(f"    {n}. {isco} {label} ({score:.2f}) {uri}")
            return 0
        if not a.code and not a.choice:
            print("spe-hub gateway review: give --choice N (a suggestion) or --code ISCO", file=sys.stderr)
            return 2
        found = {r[0]: r for r in review.held()}.get(a.accept)
        if found is None:
            print(f"spe-hub gateway review: nothing held as #{a.accept}", file=sys.stderr)
            return 2
        isco, esco = a.code, ""
        if a.choice:
            suggestions = lists.resolve_title(found[3], found[4]).suggestions
            if not 1 <= a.choice <= len(suggestions):
                print(
                    f"spe-hub gateway review: #{a.accept} has {len(suggestions)} suggestion(s)",
                    file=sys.stderr,
                )
                return 2
            isco, esco = suggestions[a.choice - 1][0], suggestions[a.choice - 1][1]
        if isco not in lists.isco_groups and not lists.is_unit(isco):
            print(f"spe-hub gateway review: {isco!r} is not an ISCO-08 group", file=sys.stderr)
            return 2
        folder = Path(a.pki) / "participants" / a.participant
        gateway = Sender(
            a.participant,
            (folder / "key-id").read_text().strip(),
            (folder / "signing-key.pem").read_bytes(),
            outbox,
        )
        queued = gateway.queue(review.decide(a.accept, isco, esco), progress=False)
        print(
            f"#{a.accept}: {found[3]!r} is {isco} from now on (an alias of this gateway); "
            f"{queued} record(s) signed and queued: `spe-hub gateway send` publishes them"
        )
        return 0
    finally:
        outbox.close()


def run_aliases(args: argparse.Namespace) -> int:
    """``spe-hub gateway aliases export|import FILE``: share reviewed answers with other SPEs."""
    a = args
    outbox = Outbox(Path(a.outbox or f"var/gateway/{a.participant}.sqlite3"))
    review = ReviewQueue(outbox)
    try:
        if a.direction == "export":
            Path(a.file).write_text(
                json.dumps(review.export(), ensure_ascii=False, indent=2, sort_keys=True) + "\n"
            )
            print(f"{len(review.aliases())} alias(es) written to {a.file}")
            return 0
        try:
            added = review.import_aliases(json.loads(Path(a.file).read_text(encoding="utf-8")))
        except (OSError, ValueError, GatewayError) as exc:  # unreadable, not JSON, not an alias file
            print(f"spe-hub gateway aliases: {exc}", file=sys.stderr)
            return 2
        print(f"{added} alias(es) added from {a.file} (yours are kept where both have one)")
        return 0
    finally:
        outbox.close()


def _channel(a: argparse.Namespace) -> grpc.Channel:
    """The SPE's authorised channel to the hub, from its folder of the PKI."""
    from hub.client import pki_channel

    return pki_channel(a.hub, Path(a.pki), a.participant)


def run_receive(args: argparse.Namespace) -> int:
    """``spe-hub gateway receive``: write the SPE's deliveries in its national format."""
    from hub.entrypoints.adapters import build_adapter, load_codelists

    a = args
    lists = load_codelists(a.codelists)
    if lists is None:
        return 2
    key = base64.b64decode(Path(a.subject_key_file).read_text().strip()) if a.subject_key_file else b""
    try:
        # Writing keys nobody: a throwaway key satisfies the adapters that also read people.
        adapter = build_adapter(a.adapter, lists, a.participant, (), a.mapping, key or os.urandom(32))
    except AdapterError as exc:
        print(f"spe-hub gateway: {exc}", file=sys.stderr)
        return 2
    inbox = Inbox(Path(a.out), adapter)
    confirm: bool | int = True if a.confirm_deletions == "all" else int(a.confirm_deletions or 0)
    with _channel(a) as channel:
        try:
            hub_key = Path(a.hub_public_key).read_bytes() if a.hub_public_key else None
            directory = fetch_directory(channel, hub_key)
        except (OSError, GatewayError, grpc.RpcError) as exc:
            reason = exc.code().name if isinstance(exc, grpc.RpcError) else str(exc)
            print(f"spe-hub gateway: cannot get the directory: {reason}", file=sys.stderr)
            return 1
        report = Receiver(inbox, directory, confirm_deletions=confirm or False).run(channel, follow=a.follow)
    inbox.close()
    print(
        f"{report.written} record(s) written to {inbox.folder / 'records'}, {report.withdrawn} withdrawal(s), "
        f"{report.erased} erasure(s), {report.refused} refused (bad signature: see notices.csv); "
        f"{report.checkpoints} audit checkpoint(s) kept in {inbox.folder / 'witness.jsonl'}; "
        + (
            f"every delivery up to sequence {report.acknowledged} acknowledged to the hub"
            if report.acknowledged
            else "nothing new to acknowledge"
        )
    )
    if report.checkpoint_went_back:
        print(
            f"WARNING: the hub's audit checkpoint went back to entry {report.checkpoint_went_back}, below one "
            "kept before: keep witness.jsonl and tell the partnership (docs/trust.md, witnessed checkpoints)"
        )
    if report.held_deletion:
        print(
            f"held at deletion notice {report.held_deletion}: delete the record in your systems (notices.csv), "
            f"then run again with --confirm-deletions {report.held_deletion}"
        )
    if report.link_error:
        print(f"link: {report.link_error}; run again to receive the rest")
    return 1 if report.link_error or report.held_deletion else 0


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser(
        "gateway", help="an SPE's gateway: national files → signed records → outbox → hub"
    )
    actions = parser.add_subparsers(dest="action", required=True)
    p = actions.add_parser("send", help="convert, sign and queue FILEs (none: only send what is pending)")
    p.add_argument("adapter", help=adapter_help())
    p.add_argument("files", nargs="*")
    p.add_argument("--participant", required=True)
    p.add_argument("--pki", default="certs/dev", help="folder with ca.pem and participants/<id>/")
    add_hub_option(p)
    p.add_argument("--outbox", default="")
    p.add_argument("--codelists", default="var/codelists")
    p.add_argument("--mapping", default="")
    p.add_argument(
        "--subject-key-file", default="", help="base64 key keying national numbers (tabular exports)"
    )
    p.add_argument("--offer-target", action="append", default=[], help="country an offer is addressed to")
    p.add_argument("--country", default="", help="residence country when a CV gives none (europass-xml)")
    p.add_argument("--batch", type=int, default=200)
    p.set_defaults(func=run)
    p = actions.add_parser(
        "review", help="records held for their occupation: list them with suggestions, or decide one"
    )
    p.add_argument("--participant", required=True)
    p.add_argument("--outbox", default="")
    p.add_argument("--codelists", default="var/codelists")
    p.add_argument(
        "--pki", default="certs/dev", help="folder with participants/<id>/ (to sign what is decided)"
    )
    p.add_argument("--accept", type=int, default=None, metavar="ID", help="decide held record #ID")
    p.add_argument("--choice", type=int, default=0, metavar="N", help="with --accept: suggestion N")
    p.add_argument("--code", default="", help="with --accept: an ISCO-08 code of 1 to 4 digits instead")
    p.set_defaults(func=run_review)
    p = actions.add_parser("aliases", help="export or import the gateway's reviewed answers (JSON)")
    p.add_argument("direction", choices=["export", "import"])
    p.add_argument("file")
    p.add_argument("--participant", required=True)
    p.add_argument("--outbox", default="")
    p.set_defaults(func=run_aliases)
    p = actions.add_parser(
        "receive", help="write the SPE's deliveries (offers, notices) in its national format"
    )
    p.add_argument("adapter", help=adapter_help())
    p.add_argument("--participant", required=True)
    p.add_argument(
        "--out", required=True, help="folder for records/<origin>/<record>.v<version>.* and notices.csv"
    )
    p.add_argument("--pki", default="certs/dev", help="folder with ca.pem and participants/<id>/")
    add_hub_option(p)
    p.add_argument("--codelists", default="var/codelists")
    p.add_argument("--mapping", default="", help="the mapping file, for the tabular adapter")
    p.add_argument("--subject-key-file", default="")
    p.add_argument(
        "--hub-public-key", default="", help="check the directory export's signature with this key"
    )
    p.add_argument(
        "--confirm-deletions",
        default="",
        help="SEQ: your systems deleted the record of notice SEQ; 'all': the gateway's files are your only copy",
    )
    p.add_argument("--follow", action="store_true", help="keep receiving until interrupted")
    p.set_defaults(func=run_receive)
