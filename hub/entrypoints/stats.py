"""``spe-hub stats``: corridor statistics for operators and the partnership (counts only)."""

from __future__ import annotations

import argparse
import sys

from hub import csvout
from hub.bootstrap import open_store
from hub.clock import system_clock
from hub.services.statistics import KINDS, THRESHOLD, cells, corridor_counts

COLUMNS = ("kind", "origin", "destination", "mobility", "isco_major", "month", "count")


def run_stats(args: argparse.Namespace) -> int:
    _settings, store = open_store()
    rows = [
        c
        for c in cells(corridor_counts(store, system_clock), by_month=not args.all_months)
        if not args.kind or c.corridor.kind in args.kind
    ]
    store.close()
    if args.csv:
        writer = csvout.Writer(sys.stdout, lineterminator="\n")
        writer.writerow(COLUMNS)
        for c in rows:
            k = c.corridor
            writer.writerow(
                (
                    k.kind,
                    k.origin_country,
                    k.destination_country,
                    k.mobility_type,
                    k.isco_major_group,
                    k.month or "all",
                    c.shown,
                )
            )
        return 0
    if not rows:
        print("no corridor has anything to count yet (under consents that allow statistics)")
        return 0
    print(f"{'kind':15} {'corridor':9} {'mobility':10} {'ISCO':4} {'month':7} {'count':>5}")
    for c in rows:
        k = c.corridor
        print(
            f"{k.kind:15} {k.origin_country + '→' + k.destination_country:9} {k.mobility_type:10} "
            f"{k.isco_major_group:4} {k.month or 'all':7} {c.shown:>5}"
        )
    print(f"(cells under {THRESHOLD} shown as <{THRESHOLD}; only consents that allow statistics count)")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("stats", help="corridor statistics: origin → destination, mobility, ISCO group, month")
    p.add_argument("--csv", action="store_true", help="CSV on standard output")
    p.add_argument("--all-months", action="store_true", help="sum over months")
    p.add_argument("--kind", action="append", choices=KINDS, help="only these kinds (repeatable)")
    p.set_defaults(func=run_stats)
