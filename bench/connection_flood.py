"""Connection floods: every participant's unary latency while stalled TLS handshakes are open,
and how long the hub takes to close them.

Run: .venv/bin/python bench/connection_flood.py [--stalled 2000] [--rounds 40] [--nofile 1024]
     [--handshake-timeout 10]

A hub process (`spe-hub serve`, SQLite, a fresh development PKI, its descriptor limit lowered to
--nofile) on a loopback port. First each of the 13 participants makes --rounds ListParticipants
calls in turn with nothing else going on (the quiet figure, also the per-call cost of admission).
Then --stalled connections from 127.0.0.2 connect and never finish their handshake (every second
one sends half a ClientHello); the participants make the same calls meanwhile. The figures are
their p50/p99 in both cases, the seconds until the hub had closed every stalled connection, the
hub's descriptors during the flood, and what one look of the per-address guard costs here (read
its tables, in this process). Loopback only; bounded by the counts and --timeout.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.idle_streams import _summary
from hub import pki
from hub.api.connections import own_sockets, peers
from tests.support.idle_streams import unary_latencies
from tests.support.processes import HubProcess, hub_env
from tests.support.stalled_handshakes import StalledHandshakes, descriptor_count

TRUST_DOMAIN = "bench.spehub.invalid"


def _look_cost(port: int, repeat: int = 20) -> tuple[float, float, int]:
    """Milliseconds one guard look takes here: listing the connections of the hub's port, and
    finding descriptors among this process's (the worst case: none of them is here, so every
    descriptor is read); and how many connections it listed."""
    started = time.perf_counter()
    for _ in range(repeat):
        found = peers(port)
    listed = time.perf_counter()
    for _ in range(repeat):
        own_sockets(set(found))
    ended = time.perf_counter()
    return (listed - started) * 1000 / repeat, (ended - listed) * 1000 / repeat, len(found)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--stalled", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--nofile", type=int, default=1024, help="the hub's RLIMIT_NOFILE")
    parser.add_argument("--handshake-timeout", type=int, default=10, help="SPEHUB_HANDSHAKE_TIMEOUT_SECONDS")
    parser.add_argument("--timeout", type=float, default=180.0, help="give up waiting for the closes after")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="spehub-flood-") as tmp:
        folder = Path(tmp)
        root = folder / "pki"
        pki.generate_dev_pki(root, trust_domain=TRUST_DOMAIN)
        env = hub_env(
            root,
            f"sqlite:///{folder / 'hub.sqlite3'}",
            f"sqlite:///{folder / 'keys.sqlite3'}",
            TRUST_DOMAIN,
            SPEHUB_HANDSHAKE_TIMEOUT_SECONDS=str(args.handshake_timeout),
        )
        hub = HubProcess.start(env, folder / "hub.log", folder, nofile=args.nofile)
        flood = StalledHandshakes(hub.port, args.stalled)
        try:
            quiet, failed_quiet = unary_latencies(hub.port, root, args.rounds)
            flood.open()
            descriptors = descriptor_count(hub.proc.pid)
            list_ms, fds_ms, listed = _look_cost(hub.port)
            busy, failed = unary_latencies(hub.port, root, args.rounds)
            left = flood.still_open()
            took = flood.wait_closed(args.timeout)
        finally:
            flood.close()
            hub.stop()
        exhausted = "File descriptor limit reached" in (folder / "hub.log").read_text()
    print(
        f"machine: {sys.platform}, hub RLIMIT_NOFILE={args.nofile}, handshake timeout {args.handshake_timeout} s"
    )
    print(f"flood: {args.stalled} stalled handshakes from 127.0.0.2, refused by the kernel {flood.refused}")
    print(f"hub descriptors during the flood: {descriptors}; descriptor limit reached: {exhausted}")
    print(f"stalled connections still open after the busy calls: {left}")
    print(f"all closed {took:.1f} s after they opened" if took is not None else "NOT all closed")
    print(
        f"one guard look: {list_ms:.2f} ms to list the {listed} connections of the hub's port; "
        f"{fds_ms:.2f} ms to read all {args.stalled} descriptors of a process (only when an address is over its cap)"
    )
    print(f"unary, no flood   ({len(quiet)} calls, failed {dict(failed_quiet)}): {_summary(quiet)}")
    print(f"unary, with flood ({len(busy)} calls, failed {dict(failed)}): {_summary(busy)}")


if __name__ == "__main__":
    main()
