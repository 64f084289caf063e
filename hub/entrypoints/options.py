"""Options the client commands share."""

from __future__ import annotations

import argparse
import os


def add_hub_option(parser: argparse.ArgumentParser) -> None:
    """The one option every client command names the hub with (and its environment variable)."""
    parser.add_argument(
        "--hub",
        default=os.environ.get("SPEHUB_TARGET", "127.0.0.1:50051"),
        help="the hub's address, HOST:PORT (SPEHUB_TARGET when it is set)",
    )


def adapter_help() -> str:
    """The adapter positional's help: the names installed."""
    from adapters.base import available

    return "the national format's adapter: " + ", ".join(available())
