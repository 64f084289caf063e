"""Idle streams: unary latency of every participant while a crowd holds idle streams open.

Run: .venv/bin/python bench/idle_streams.py [--streams 1000] [--rounds 40] [--workers 32]

A hub process (`spe-hub serve`, SQLite, a fresh development PKI with one revoked
certificate) on a loopback port; a second process (tests/support/idle_streams.py) opens
--streams Subscribe and health Watch streams spread over the 13 participants,
plus 30 tries from the revoked certificate, and holds them idle. Then each of
the 13 participants makes --rounds ListParticipants calls in turn, and the
figure is their p50/p99 latency next to the same calls with no crowd, and the
hub's thread count before and during. Loopback only; bounded by the counts and
the crowd's --hold.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.idle_streams import (
    pki_with_revoked_certificate,
    started_crowd,
    thread_count,
    unary_latencies,
)
from tests.support.processes import HubProcess, hub_env

TRUST_DOMAIN = "bench.spehub.invalid"


def _summary(took: list[float]) -> str:
    ordered = sorted(took)
    p99 = ordered[max(0, int(len(ordered) * 0.99) - 1)]
    return f"p50 {statistics.median(ordered) * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, max {ordered[-1] * 1000:.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--workers", type=int, default=32, help="SPEHUB_WORKERS of the hub")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="spehub-idle-") as tmp:
        folder = Path(tmp)
        root = pki_with_revoked_certificate(folder / "pki", TRUST_DOMAIN)
        env = hub_env(
            root,
            f"sqlite:///{folder / 'hub.sqlite3'}",
            f"sqlite:///{folder / 'keys.sqlite3'}",
            TRUST_DOMAIN,
            SPEHUB_WORKERS=str(args.workers),
            SPEHUB_MAX_STREAMS_PER_PARTICIPANT=str(-(-args.streams // 13) + 1),
        )
        hub = HubProcess.start(env, folder / "hub.log", folder)
        try:
            quiet, failed_quiet = unary_latencies(hub.port, root, args.rounds)
            before = thread_count(hub.proc.pid)
            with started_crowd(hub.port, root, args.streams, revoked_streams=30) as crowd:
                during = thread_count(hub.proc.pid)
                busy, failed = unary_latencies(hub.port, root, args.rounds)
        finally:
            hub.stop()
    print(f"machine: {sys.platform}, hub SPEHUB_WORKERS={args.workers}")
    print(f"crowd: {crowd['open']} idle streams open, refused {crowd['refused']}")
    print(f"hub threads: {before} before the crowd, {during} during")
    print(f"unary, no crowd   ({len(quiet)} calls, failed {dict(failed_quiet)}): {_summary(quiet)}")
    print(
        f"unary, with crowd ({len(busy)} calls, failed {dict(failed)}): {_summary(busy)}  (target p99 < 100 ms)"
    )


if __name__ == "__main__":
    main()
