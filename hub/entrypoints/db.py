"""``spe-hub db upgrade|current|check|rank-offers``: the store's schema revision, on
``SPEHUB_DATABASE_URL``, and the match rankings of open offers kept in it."""

from __future__ import annotations

import argparse
import time

from hub.bootstrap import open_store
from hub.clock import system_clock
from hub.services.operations import StatisticsKeeper
from hub.store import migrate


def run_db(args: argparse.Namespace) -> int:
    _settings, store = open_store(create_schema=False)
    try:
        if args.action == "rank-offers":
            from hub.services.matching import Rankings

            # Each pending offer once: under steady publication, rankings go stale as they are made.
            start = time.perf_counter()
            ranked = Rankings(store, system_clock, statistics=StatisticsKeeper(store)).rank_pending(None)
            print(f"ranked the candidates of {ranked} open offer(s) in {time.perf_counter() - start:.1f} s")
            return 0
        if args.action == "upgrade":
            before = migrate.current(store.engine)
            migrate.upgrade(store.engine, args.revision)
            print(f"schema at revision {migrate.current(store.engine)} (was {before or 'empty'})")
            if args.revision == "head":
                analysed = StatisticsKeeper(store).refresh()
                print(f"planner statistics refreshed for {len(analysed)} table(s) that changed")
            return 0
        if args.action == "current":
            at, newest = migrate.current(store.engine), migrate.head()
            print(f"schema at revision {at or 'none'}; the code's newest is {newest}")
            return 0 if at == newest else 1
        diffs = migrate.differences(store.engine)
        for diff in diffs:
            print(f"differs: {diff}")
        print(
            "schema matches the code"
            if not diffs
            else f"{len(diffs)} difference(s): run `spe-hub db upgrade`"
        )
        return 0 if not diffs else 1
    finally:
        store.close()


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser("db", help="the store's schema: migrate it, or say where it stands")
    actions = parser.add_subparsers(dest="action", required=True)
    p = actions.add_parser(
        "upgrade",
        help="migrate to the newest revision (or REVISION); at the newest, also analyse the tables "
        "that changed by more than a tenth since their last analysis",
    )
    p.add_argument("revision", nargs="?", default="head")
    actions.add_parser("current", help="the revision the database is at (exit 1 if behind the code)")
    actions.add_parser("check", help="compare the database with the code's tables (exit 1 if they differ)")
    actions.add_parser(
        "rank-offers",
        help="rank now the candidates of every open offer whose ranking is missing or stale "
        "(the hub does it in the background; useful after a bulk load or an upgrade)",
    )
    parser.set_defaults(func=run_db)
