"""Gateway helpers the gateway, audit and CSV tests share."""

from __future__ import annotations

import base64
from pathlib import Path

import grpc

from adapters.codelists import CodeLists
from adapters.tabular import TabularAdapter
from hub.client import authorized_channel
from hub.gateway import Inbox

ROOT = Path(__file__).resolve().parents[2]
SN = "sn-anpej"


def participant_channel(port: int, test_pki: object, pid: str) -> grpc.Channel:
    """A participant's mTLS channel with access tokens, from the test PKI's files."""
    folder = test_pki.participant_dir(pid)  # type: ignore[attr-defined]
    return authorized_channel(
        f"127.0.0.1:{port}",
        test_pki.ca_pem,  # type: ignore[attr-defined]
        (folder / "client.pem").read_bytes(),
        (folder / "client-key.pem").read_bytes(),
    )


def sn_inbox(codelists: CodeLists, tmp_path: Path, inbox_class: type[Inbox] | None = None) -> Inbox:
    """Senegal's gateway inbox, writing received offers with its template mapping."""
    adapter = TabularAdapter(codelists, ROOT / "adapters" / "mappings" / "sn-anpej.toml", b"k" * 32)
    return (inbox_class or Inbox)(tmp_path / "inbox", adapter)


def tabular_send(
    export: Path, participant: str, outbox: Path, mapping: Path, hub_port: int, test_pki: object, key: bytes
) -> list[str]:
    """The `spe-hub gateway send tabular` command line for an export, with a subject key file
    written beside the outbox."""
    key_file = outbox.parent / "subject.key"
    key_file.write_text(base64.b64encode(key).decode())
    return [
        "gateway",
        "send",
        "tabular",
        str(export),
        "--participant",
        participant,
        "--outbox",
        str(outbox),
        "--pki",
        str(test_pki.root),  # type: ignore[attr-defined]
        "--hub",
        f"127.0.0.1:{hub_port}",
        "--mapping",
        str(mapping),
        "--subject-key-file",
        str(key_file),
    ]
