"""The configuration and CLI references are generated from the code: they cannot drift."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _generator():
    spec = importlib.util.spec_from_file_location("gen_reference", ROOT / "scripts" / "gen_reference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_configuration_reference_is_what_the_code_says(monkeypatch):
    generated = _generator().configuration()
    assert (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8") == generated, (
        "docs/configuration.md differs from hub/config.py: run `make docs`"
    )
    from hub.config import VARIABLES, Settings

    # Every setting but the ones only tests change is reachable from the environment.
    fields = {f for f in Settings.__dataclass_fields__} - {"delivery_poll_seconds"}
    assert {v.field for v in VARIABLES} == fields


def test_cli_reference_is_what_the_parsers_say(monkeypatch):
    monkeypatch.delenv("SPEHUB_TARGET", raising=False)
    generated = _generator().cli()
    assert (ROOT / "docs" / "cli.md").read_text(encoding="utf-8") == generated, (
        "docs/cli.md differs from the argparse parsers: run `make docs`"
    )
