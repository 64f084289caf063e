"""The ``spe-hub`` command."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any

import grpc

from hub import logs
from hub.config import DEV_PKI_DIR, Settings
from hub.entrypoints.options import add_hub_option
from hub.errors import HubError


def _serve(args: argparse.Namespace) -> int:
    from hub.bootstrap import serve

    return serve(Settings.from_env(os.environ), os.environ)


def _dev_pki(args: argparse.Namespace) -> int:
    from hub import pki

    out = Path(args.out)
    if (out / "registry.json").exists() and not args.force:
        print(f"{out} already holds a PKI; use --force to replace it", file=sys.stderr)
        return 1
    registry = pki.generate_dev_pki(out)
    print(f"development PKI written to {out} (NOT for production):")
    for p in registry["participants"]:  # type: ignore[attr-defined]
        print(f"  {p['id']:24} {p['country_code']}  {p['kind']}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from hub.entrypoints.demo import run_demo

    run_demo(args.hub, Path(args.pki), Path(args.out))
    return 0


def _verify(args: argparse.Namespace) -> int:
    from hub.domain.directory import Directory
    from hub.entrypoints.verify import high_s_note, verify_file

    rec = verify_file(Path(args.file), Directory.load(Path(args.registry)))
    print(f"OK: {rec.kind.value} {rec.record_id!r} version {rec.version}, signed by {rec.origin_id!r}")
    note = high_s_note(Path(args.file))
    if note:
        print(note)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="spe-hub", description="SPE Hub: exchange between employment services")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("serve", help="run the hub (settings from SPEHUB_* variables; dev defaults)")
    p.set_defaults(func=_serve)
    p = sub.add_parser(
        "dev-pki", help="generate the development PKI (CA, hub and participant certificates, keys)"
    )
    p.add_argument("--out", default=str(DEV_PKI_DIR))
    p.add_argument("--force", action="store_true", help="replace an existing PKI")
    p.set_defaults(func=_dev_pki)
    p = sub.add_parser("demo", help="drive a running hub through a signed exchange, step by step")
    add_hub_option(p)
    p.add_argument("--pki", default=str(DEV_PKI_DIR))
    p.add_argument("--out", default="var/demo", help="where to save a received envelope")
    p.set_defaults(func=_demo)
    from hub.entrypoints import adapters, audit, client, db, gateway, participants, stats, synth

    participants.add_parser(sub)
    audit.add_parsers(sub)
    adapters.add_parsers(sub)
    gateway.add_parser(sub)
    stats.add_parser(sub)
    client.add_parsers(sub)
    db.add_parser(sub)
    synth.add_parser(sub)
    p = sub.add_parser("verify", help="verify a signed envelope file offline")
    p.add_argument("file")
    p.add_argument("--registry", default=str(DEV_PKI_DIR / "registry.json"))
    p.set_defaults(func=_verify)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # The hub logs JSON lines (for the log pipeline); the other commands talk to a person, who
    # does not need Alembic's INFO lines about the migrations every command checks.
    default_format = "json" if args.command == "serve" else "text"
    logs.configure(
        os.environ.get("SPEHUB_LOG_LEVEL", "INFO"), os.environ.get("SPEHUB_LOG_FORMAT", default_format)
    )
    if args.command != "serve":
        logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        return int(args.func(args))
    except HubError as exc:
        print(f"spe-hub {args.command}: {exc}", file=sys.stderr)
        return 2
    except grpc.RpcError as exc:  # the hub could not be reached, or refused the call
        where = getattr(args, "hub", "the hub")
        code = exc.code().name if hasattr(exc, "code") else "UNKNOWN"
        detail = exc.details() if hasattr(exc, "details") else str(exc)
        print(f"spe-hub {args.command}: {where} answered {code}: {detail}", file=sys.stderr)
        return 1
    except OSError as exc:  # a file named on the command line cannot be read
        print(f"spe-hub {args.command}: {exc.filename or ''}: {exc.strerror or exc}", file=sys.stderr)
        return 2


class _Parser(argparse.ArgumentParser):
    """Every command's --help shows the defaults (subcommands are made with their parent's class)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", argparse.ArgumentDefaultsHelpFormatter)
        super().__init__(*args, **kwargs)


if __name__ == "__main__":
    sys.exit(main())
