"""Metrics scrape latency, and the background computation of the gauges, with N candidates in the store.

Run: .venv/bin/python bench/scrape.py [--profiles 200000] [--scrapes 400] [--keep FOLDER]
     [--database-url postgresql+psycopg://postgres@127.0.0.1:5432/bench_scrape]

A hub process (`spe-hub serve`) on loopback ports, on a store loaded with
`spe-hub synth` candidates (bench/pool_scale.py's loader; with --keep, a folder
that bench/pool_scale.py --keep or an earlier run loaded is used as it is), is
scraped --scrapes times, one scrape every --pace seconds, over at least one
recomputation of the corridor statistics (--corridor-seconds apart). Prints
p50/p99/max of the scrapes, apart for those made while the corridors were being
computed (the hub's Python work then shares the interpreter lock with the scrape),
how long each background computation took (what a scrape cost when it ran them
inline), and the hub's peak RSS. Loopback only; bounded by --scrapes and --timeout.
"""

from __future__ import annotations

import argparse
import signal
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from prometheus_client.parser import text_string_to_metric_families

from bench.ingest import start_hub, wait_ready
from bench.pool_scale import FT, channel_for, load
from hub import pki
from tests.support.processes import free_port


def _gauges(body: str, name: str) -> dict[str, float]:
    """The samples of ``name`` by their ``source`` label."""
    return {
        s.labels.get("source", ""): s.value
        for family in text_string_to_metric_families(body)
        for s in family.samples
        if s.name == name
    }


def _scrape(port: int) -> tuple[float, str]:
    t0 = time.perf_counter()
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=60).read().decode()
    return time.perf_counter() - t0, body


def _memory(pid: int) -> str:
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line
    )
    return f"RSS {fields['VmRSS'].strip()}, peak {fields['VmHWM'].strip()}"


def _ms(samples: list[float]) -> str:
    if not samples:
        return "none"
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return (
        f"p50 {statistics.median(ordered) * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, "
        f"max {ordered[-1] * 1000:.1f} ms ({len(ordered)} scrapes)"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--profiles", type=int, default=200_000)
    parser.add_argument("--scrapes", type=int, default=400)
    parser.add_argument("--pace", type=float, default=0.1, help="seconds between scrapes")
    parser.add_argument("--refresh-seconds", type=int, default=15, help="SPEHUB_METRICS_REFRESH_SECONDS")
    parser.add_argument("--corridor-seconds", type=int, default=20, help="SPEHUB_STATISTICS_CACHE_SECONDS")
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--database-url", default="")
    parser.add_argument("--timeout", type=float, default=3600)
    parser.add_argument(
        "--keep", default="", help="a folder with a loaded store (bench/pool_scale.py --keep)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.keep or tmp)
        folder.mkdir(parents=True, exist_ok=True)
        root = folder / "pki"
        loaded = root.is_dir() and any(folder.glob(f"loaded-{args.profiles}-*"))
        if not root.is_dir():
            pki.generate_dev_pki(root)
        database_url = args.database_url or f"sqlite:///{folder / 'hub.sqlite3'}"
        store = "PostgreSQL" if database_url.startswith("postgresql") else "SQLite"
        port, metrics = free_port(), free_port()
        hub = start_hub(
            root,
            database_url,
            port,
            SPEHUB_METRICS_LISTEN=f"127.0.0.1:{metrics}",
            SPEHUB_MATCH_RANKING_SECONDS="0",
            SPEHUB_METRICS_REFRESH_SECONDS=str(args.refresh_seconds),
            SPEHUB_STATISTICS_CACHE_SECONDS=str(args.corridor_seconds),
        )
        try:
            with channel_for(root, port, FT) as ft:
                wait_ready(ft, 120)
            if not loaded:
                rate = load(root, port, args)
                (folder / f"loaded-{args.profiles}-0-{args.seed}").touch()
                print(f"loaded {args.profiles} candidates (consent + profile): {rate:,.0f} records/s")
            # The first computation of every source, done.
            deadline = time.monotonic() + args.timeout
            while True:
                _took, body = _scrape(metrics)
                done = _gauges(body, "spehub_metrics_source_duration_seconds")
                if {"operational_gauges", "deletion_acks_overdue", "corridors"} <= set(done):
                    break
                if time.monotonic() > deadline or hub.poll() is not None:
                    raise RuntimeError("the hub did not compute its gauges")
                time.sleep(0.2)
            quiet, computing, durations = [], [], {}
            for _ in range(args.scrapes):
                took, body = _scrape(metrics)
                ages = _gauges(body, "spehub_metrics_source_age_seconds")
                # Past its interval, a source is being computed again.
                (computing if ages["corridors"] >= args.corridor_seconds else quiet).append(took)
                for source, seconds in _gauges(body, "spehub_metrics_source_duration_seconds").items():
                    durations.setdefault(source, set()).add(round(seconds, 3))
                time.sleep(args.pace)
            series = sum(1 for line in body.splitlines() if line and not line.startswith("#"))
            print(
                f"metrics scrape ({store}, {args.profiles} candidates; {len(body) / 1024:.0f} KiB, "
                f"{series} series): {_ms(quiet + computing)}"
            )
            print(f"  while no corridor count ran: {_ms(quiet)}")
            print(f"  while the corridors were being counted: {_ms(computing)}")
            for source, seen in sorted(durations.items()):
                print(
                    f"background computation of {source}: "
                    + ", ".join(f"{s * 1000:.0f} ms" for s in sorted(seen))
                )
            print(f"hub process: {_memory(hub.pid)}")
        finally:
            hub.send_signal(signal.SIGTERM)
            hub.wait(120)


if __name__ == "__main__":
    main()
