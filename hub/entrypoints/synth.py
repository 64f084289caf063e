"""``spe-hub synth candidates|offers N``: synthetic records (hub.synth), written or published.

``--out FILE`` writes protobuf JSON lines ({"type": …, "record": …}); ``--publish``
signs each record with its origin's key from the PKI folder and publishes it in
batches (the PKI must hold the participants: the dev PKI has every SPE).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from google.protobuf import json_format
from spehub.v1 import exchange_pb2, exchange_pb2_grpc

from hub import synth
from hub.client import pki_channel, pki_signing_key, seal
from hub.domain.records import PayloadKind
from hub.entrypoints.options import add_hub_option

TYPE_NAMES = {
    PayloadKind.CONSENT: "consent",
    PayloadKind.CANDIDATE_PROFILE: "profile",
    PayloadKind.PERSONAL_DETAILS: "personal",
    PayloadKind.JOB_OFFER: "offer",
}


def records(args: argparse.Namespace) -> Iterator[tuple[PayloadKind, Any]]:
    now = synth.now_utc()
    if args.what == "offers":
        for offer in synth.offers(args.seed, args.count, now):
            yield PayloadKind.JOB_OFFER, offer
        return
    countries = (
        tuple(c.strip().upper() for c in args.countries.split(","))
        if args.countries
        else tuple(synth.COUNTRIES)
    )
    for consent, profile, personal in synth.candidates(args.seed, args.count, now, countries):
        yield PayloadKind.CONSENT, consent
        yield PayloadKind.CANDIDATE_PROFILE, profile
        yield PayloadKind.PERSONAL_DETAILS, personal


def _write(items: Iterable[tuple[PayloadKind, Any]], path: Path) -> int:
    n = 0
    with path.open("w", encoding="utf-8") as out:
        for kind, record in items:
            body = json_format.MessageToDict(record)
            out.write(json.dumps({"type": TYPE_NAMES[kind], "record": body}, ensure_ascii=False) + "\n")
            n += 1
    return n


def _publish(items: Iterable[tuple[PayloadKind, Any]], args: argparse.Namespace) -> tuple[int, int]:
    """Sign per origin and publish in batches over one stream per origin. Returns (accepted, refused)."""
    pki = Path(args.pki)
    keys: dict[str, tuple[str, Any]] = {}
    batches: dict[str, list[Any]] = {}
    accepted = refused = 0
    channels: dict[str, Any] = {}

    def flush(origin: str) -> None:
        nonlocal accepted, refused
        envelopes = batches.pop(origin, [])
        if not envelopes:
            return
        if origin not in channels:
            channels[origin] = pki_channel(args.hub, pki, origin)
        stub = exchange_pb2_grpc.ExchangeServiceStub(channels[origin])
        (response,) = stub.Publish(
            iter([exchange_pb2.PublishRequest(request_id="synth", envelopes=envelopes)]), timeout=120
        )
        for r in response.results:
            if r.outcome == exchange_pb2.RECORD_OUTCOME_REJECTED:
                refused += 1
                if refused <= 5:
                    print(
                        f"  refused {r.record_id}: {exchange_pb2.RejectionReason.Name(r.reason)} {r.field}: {r.message}"
                    )
            else:
                accepted += 1

    try:
        for kind, record in items:
            origin = record.header.origin_participant_id
            if origin not in keys:
                keys[origin] = pki_signing_key(pki, origin)
            key_id, key = keys[origin]
            batches.setdefault(origin, []).append(seal(record, kind, origin, key_id, key, synth.now_utc()))
            if len(batches[origin]) >= args.batch:
                flush(origin)
        for origin in list(batches):
            flush(origin)
    finally:
        for channel in channels.values():
            channel.close()
    return accepted, refused


def run(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    items = records(args)
    if args.out:
        n = _write(items, Path(args.out))
        print(f"{n} record(s) written to {args.out} in {time.perf_counter() - start:.1f} s")
        return 0
    if args.publish:
        try:
            accepted, refused = _publish(items, args)
        except FileNotFoundError as exc:
            print(f"spe-hub synth: {exc.filename}: not in the PKI folder (see --pki)", file=sys.stderr)
            return 2
        print(f"{accepted} accepted, {refused} refused in {time.perf_counter() - start:.1f} s")
        return 0 if not refused else 1
    n = sum(1 for _ in items)
    print(f"{n} record(s) made in {time.perf_counter() - start:.1f} s (give --out or --publish to keep them)")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "synth", help="synthetic candidates or offers for the partnership (deterministic by seed)"
    )
    p.add_argument("what", choices=["candidates", "offers"])
    p.add_argument("count", type=int)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--countries", default="", help="origin countries, e.g. SN,MA (default: all ten)")
    p.add_argument("--out", default="", help="write protobuf JSON lines here")
    p.add_argument("--publish", action="store_true", help="sign and publish to the hub")
    add_hub_option(p)
    p.add_argument("--pki", default="certs/dev")
    p.add_argument("--batch", type=int, default=500)
    p.set_defaults(func=run)
