#!/usr/bin/env python3
"""Regenerate the Python code that sits beside the .proto files.

The one codegen script (STYLE habit 1). Generated modules import as
``spehub.v1.<name>_pb2`` because the .proto path is the import path.
The generators are pinned in pyproject.toml (``dev`` extra): grpcio-tools for
protoc and the gRPC plugin, mypy-protobuf for the typed stubs.

Usage: python scripts/gen_proto.py [OUT_DIR]   (default: proto/)
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "proto"


def proto_files() -> list[str]:
    """The .proto files of the contract, relative to proto/, sorted."""
    return sorted(p.relative_to(PROTO_ROOT).as_posix() for p in (PROTO_ROOT / "spehub").rglob("*.proto"))


def generate(out_dir: Path) -> None:
    """Run protoc over every .proto file, writing the Python code into out_dir.

    Raises subprocess.CalledProcessError if protoc fails.
    """
    bindir = Path(sys.executable).parent
    out_dir.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        f"--proto_path={PROTO_ROOT}",
        f"--plugin=protoc-gen-mypy={bindir / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={bindir / 'protoc-gen-mypy_grpc'}",
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        f"--mypy_out={out_dir}",
        f"--mypy_grpc_out={out_dir}",
        *proto_files(),
    ]
    subprocess.run(cmd, check=True, cwd=PROTO_ROOT)


if __name__ == "__main__":
    generate(Path(sys.argv[1]) if len(sys.argv) > 1 else PROTO_ROOT)
