"""Ingest: signed profiles published over mTLS by several participants at once, against the verify ceiling.

Run: .venv/bin/python bench/ingest.py [--records 20000] [--batch 200] [--participants 3]
     [--database-url postgresql+psycopg://postgres@127.0.0.1:5432/test] [--processes 2 --connections 2]

The hub runs as its own process (`spe-hub serve`) on a loopback port with a
fresh PKI and database; the profiles are signed before the clock starts, then
each participant publishes its share over one stream in batches. The figure
is records durably stored per second, printed next to the signature
verification ceiling of all cores measured in the same run (verify-only loop,
P-256, on this process's threads). Loopback only; bounded by --records and
--timeout.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from spehub.v1 import exchange_pb2, exchange_pb2_grpc

from bench.signatures import p256_verifier, rate
from hub import pki
from hub.client import authorized_channel, seal
from hub.config import DEV_TRUST_DOMAIN
from hub.domain.records import PayloadKind
from hub.domain.signing import load_private_key
from hub.entrypoints.demo import demo_profile
from tests.support.processes import free_port, hub_env

ORIGINS = ("sn-anpej", "ml-anpe", "ma-anapec")


def start_hub(root: Path, database_url: str, port: int, **extra: str) -> subprocess.Popen[bytes]:
    settings = {
        "SPEHUB_LISTEN": f"127.0.0.1:{port}",
        "SPEHUB_METRICS_LISTEN": "",
        # A benchmark measures throughput, not the per-participant rate limit.
        "SPEHUB_RATE_LIMIT_PER_SECOND": "1000000",
        "SPEHUB_RATE_LIMIT_BURST": "100000",
        "SPEHUB_MAX_BATCH_RECORDS": "5000",
        "SPEHUB_LOG_LEVEL": "WARNING",
    }
    env = hub_env(
        root,
        database_url,
        f"sqlite:///{root.parent / 'keys.sqlite3'}",
        DEV_TRUST_DOMAIN,
        **{**settings, **extra},
    )
    return subprocess.Popen([sys.executable, "-m", "hub.entrypoints.cli", "serve"], env=env)


def wait_processes(metrics: int, processes: int, hub: subprocess.Popen[bytes], timeout: float) -> None:
    """Wait until every serving process answers on its metrics port (the first one to bind the
    gRPC port would otherwise get every connection opened before the others bind it)."""
    deadline = time.monotonic() + timeout
    for i in range(processes):
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{metrics + i}/metrics", timeout=5).read()
                break
            except OSError:
                if hub.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"serving process {i} did not start") from None
                time.sleep(0.2)


def wait_ready(channel: grpc.Channel, timeout: float) -> None:
    grpc.channel_ready_future(channel).result(timeout=timeout)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--participants", type=int, default=3, choices=range(1, 4))
    parser.add_argument("--database-url", default="")
    parser.add_argument("--timeout", type=float, default=300)
    parser.add_argument(
        "--processes", type=int, default=1, help="SPEHUB_PROCESSES: serving processes sharing the port"
    )
    parser.add_argument(
        "--connections",
        type=int,
        default=1,
        help="connections (each with one stream) per participant: the kernel gives each connection "
        "to one serving process",
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "pki"
        pki.generate_dev_pki(root)
        database_url = args.database_url or f"sqlite:///{Path(tmp) / 'hub.sqlite3'}"
        drop_schema = None
        if database_url.startswith("postgresql"):
            schema = f"bench_{uuid.uuid4().hex[:8]}"
            from sqlalchemy import create_engine, text
            from sqlalchemy.engine import make_url

            admin = create_engine(database_url)
            with admin.begin() as conn:
                conn.execute(text(f'CREATE SCHEMA "{schema}"'))

            def drop_schema() -> None:
                with admin.begin() as conn:
                    conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
                admin.dispose()

            database_url = (
                make_url(database_url)
                .update_query_dict({"options": f"-csearch_path={schema}"})
                .render_as_string(False)
            )

        origins = ORIGINS[: args.participants]
        per = args.records // len(origins)
        now = datetime.now(UTC)
        print(
            f"signing {per * len(origins)} profiles ({len(origins)} participants) before the clock starts ..."
        )
        batches: dict[str, list[exchange_pb2.PublishRequest]] = {}
        for origin in origins:
            folder = root / "participants" / origin
            key = load_private_key((folder / "signing-key.pem").read_bytes(), origin)
            key_id = (folder / "key-id").read_text().strip()
            envs = [
                seal(
                    demo_profile(origin, f"{origin}-p{i}", "c-1", 1, now),
                    PayloadKind.CANDIDATE_PROFILE,
                    origin,
                    key_id,
                    key,
                    now,
                )
                for i in range(per)
            ]
            batches[origin] = [
                exchange_pb2.PublishRequest(request_id=str(j), envelopes=envs[j : j + args.batch])
                for j in range(0, len(envs), args.batch)
            ]
        size = len(batches[origins[0]][0].envelopes[0].payload)

        port = free_port()
        extra = {"SPEHUB_PROCESSES": str(args.processes)}
        if args.processes > 1:  # each process is ready once its metrics port answers
            metrics = free_port()
            extra["SPEHUB_METRICS_LISTEN"] = f"127.0.0.1:{metrics}"
        hub = start_hub(root, database_url, port, **extra)
        try:
            if args.processes > 1:
                wait_processes(metrics, args.processes, hub, 120)
            ca = (root / "ca.pem").read_bytes()
            streams = [(o, k) for o in origins for k in range(args.connections)]
            channels = {
                (o, k): authorized_channel(
                    f"127.0.0.1:{port}",
                    ca,
                    (root / "participants" / o / "client.pem").read_bytes(),
                    (root / "participants" / o / "client-key.pem").read_bytes(),
                    options=[("grpc.use_local_subchannel_pool", 1)],  # a connection of its own
                )
                for o, k in streams
            }
            for channel in channels.values():
                wait_ready(channel, 60)
            accepted = dict.fromkeys(streams, 0)

            def publish(origin: str, k: int) -> None:
                stub = exchange_pb2_grpc.ExchangeServiceStub(channels[(origin, k)])
                mine = batches[origin][k :: args.connections]
                for response in stub.Publish(iter(mine), timeout=args.timeout):
                    accepted[(origin, k)] += sum(
                        r.outcome == exchange_pb2.RECORD_OUTCOME_ACCEPTED for r in response.results
                    )

            threads = [threading.Thread(target=publish, args=stream) for stream in streams]
            start = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join(args.timeout)
            elapsed = time.perf_counter() - start
            total = sum(accepted.values())
            assert total == per * len(origins), f"only {total} of {per * len(origins)} accepted"
            for channel in channels.values():
                channel.close()
        finally:
            hub.send_signal(signal.SIGTERM)
            hub.wait(60)
            if drop_schema is not None:
                drop_schema()
        ceiling = rate(p256_verifier(), 2.0, os.cpu_count() or 1)
        store = "PostgreSQL" if database_url.startswith("postgresql") else "SQLite"
        if args.processes > 1 or args.connections > 1:
            store += f", {args.processes} serving processes, {args.connections} connections per participant"
        print(
            f"ingest ({store}, {len(origins)} participants, batches of {args.batch}, {size}-byte profiles): "
            f"{total / elapsed:,.0f} records/s ({total} in {elapsed:.1f}s)"
        )
        print(
            f"verify-only ceiling, {os.cpu_count()} threads: {ceiling:,.0f}/s -> {100 * total / elapsed / ceiling:.0f}% of it"
        )


if __name__ == "__main__":
    main()
