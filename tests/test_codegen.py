"""The committed generated code is exactly what scripts/gen_proto.py produces from the .proto files."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _load_script():
    spec = importlib.util.spec_from_file_location("gen_proto", ROOT / "scripts" / "gen_proto.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_code_has_not_drifted(tmp_path):
    gen = _load_script()
    gen.generate(tmp_path)
    fresh = {p.relative_to(tmp_path): p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    committed_dir = ROOT / "proto"
    committed = {
        p.relative_to(committed_dir): p.read_bytes()
        for p in committed_dir.rglob("*")
        if p.is_file() and "_pb2" in p.name
    }
    assert fresh, "the generator produced nothing"
    assert sorted(fresh) == sorted(committed), "generated files added or missing: run scripts/gen_proto.py"
    drifted = [str(name) for name in fresh if fresh[name] != committed[name]]
    assert not drifted, f"generated code differs from the .proto files: run scripts/gen_proto.py ({drifted})"
