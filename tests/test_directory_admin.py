"""Directory RPCs, the signed export, and the operator's `spe-hub participants` commands."""

from __future__ import annotations

import json

import grpc
import pytest
from spehub.v1 import directory_pb2, directory_pb2_grpc

from hub.domain import signing
from hub.domain.directory import Directory, export_signature_valid
from hub.entrypoints.cli import main
from hub.entrypoints.participants import verify_export
from hub.errors import ConfigError
from tests.support.hubs import TRUST_DOMAIN

SN = "sn-anpej"


def test_get_and_list_participants(hub, connect):
    stub = directory_pb2_grpc.DirectoryServiceStub(connect(SN).channel)
    got = stub.GetParticipant(
        directory_pb2.GetParticipantRequest(participant_id="fr-francetravail"), timeout=10
    )
    assert got.participant.kind == directory_pb2.PARTICIPANT_KIND_DESTINATION_AGENCY
    assert got.participant.signing_keys[0].public_key_pem.startswith("-----BEGIN PUBLIC KEY")
    with pytest.raises(grpc.RpcError) as err:
        stub.GetParticipant(directory_pb2.GetParticipantRequest(participant_id="nobody"), timeout=10)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    ids = [
        p.id for p in stub.ListParticipants(directory_pb2.ListParticipantsRequest(), timeout=10).participants
    ]
    assert ids == sorted(ids) and SN in ids


def test_export_is_signed_by_the_hub_and_loads_as_a_registry(hub, connect, test_pki):
    stub = directory_pb2_grpc.DirectoryServiceStub(connect(SN).channel)
    export = stub.ExportDirectory(directory_pb2.ExportDirectoryRequest(), timeout=10)
    hub_key = signing.load_private_key(
        (test_pki.root / "hub" / "token-keys" / f"{export.key_id}.pem").read_bytes(), "hub"
    )
    at = export.signed_at
    args = (export.key_id, at.seconds, at.nanos, export.registry_json, export.signature)
    assert export_signature_valid(hub_key.public_key(), *args)
    assert not export_signature_valid(hub_key.public_key(), export.key_id, at.seconds + 1, *args[2:])
    altered = export.registry_json.replace(b"sn-anpej", b"sn-anpeX")
    assert not export_signature_valid(
        hub_key.public_key(), export.key_id, at.seconds, at.nanos, altered, args[4]
    )
    directory = Directory.from_dict(json.loads(export.registry_json))
    assert directory.trust_domain == TRUST_DOMAIN and SN in directory.participants


@pytest.fixture
def admin_env(monkeypatch, tmp_path, test_pki, database_url):
    monkeypatch.setenv("SPEHUB_DATABASE_URL", database_url)
    monkeypatch.setenv("SPEHUB_TRUST_DOMAIN", TRUST_DOMAIN)
    monkeypatch.setenv("SPEHUB_TOKEN_KEYS", str(test_pki.root / "hub" / "token-keys"))
    monkeypatch.delenv("SPEHUB_ENV", raising=False)
    return tmp_path


def test_participants_commands(admin_env, test_pki, capsys):
    tmp = admin_env
    assert main(["participants", "import", str(test_pki.root / "registry.json")]) == 0
    key = tmp / "gh.pub.pem"
    from cryptography.hazmat.primitives.asymmetric import ec

    key.write_text(signing.public_key_pem(ec.generate_private_key(ec.SECP256R1()).public_key()))
    assert (
        main(
            [
                "participants",
                "register",
                "gh-gsa",
                "--country",
                "GH",
                "--kind",
                "origin_spe",
                "--name",
                "Ghana (test)",
                "--key-id",
                "gh-1",
                "--public-key",
                str(key),
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "participants",
                "register",
                "gh-gsa",
                "--country",
                "GH",
                "--kind",
                "origin_spe",
                "--name",
                "again",
                "--key-id",
                "gh-1",
                "--public-key",
                str(key),
            ]
        )
        == 2
    )
    assert "already registered" in capsys.readouterr().err
    assert (
        main(
            [
                "participants",
                "register",
                "xx",
                "--country",
                "ZZ",
                "--kind",
                "origin_spe",
                "--name",
                "bad",
                "--key-id",
                "k",
                "--public-key",
                str(key),
            ]
        )
        == 2
    )
    assert main(["participants", "suspend", "gh-gsa"]) == 0
    assert main(["participants", "rotate-key", "gh-gsa", "--key-id", "gh-2", "--public-key", str(key)]) == 0
    assert main(["participants", "revoke-key", "gh-gsa", "gh-1"]) == 0
    assert main(["participants", "revoke-key", "gh-gsa", "nope"]) == 2
    assert main(["participants", "rotate-key", "gh-gsa", "--key-id", "gh-3", "--public-key", str(key)]) == 0
    assert (
        main(["participants", "revoke-cert", "--cert", str(test_pki.participant_dir(SN) / "client.pem")]) == 0
    )
    assert main(["participants", "revoke-cert", "--sha256", "not-hex"]) == 2
    capsys.readouterr()
    assert main(["participants", "list"]) == 0
    listing = capsys.readouterr().out
    assert "gh-gsa" in listing and "SUSPENDED" in listing and "revoked" in listing and "retired" in listing
    assert "revoked certificates: 1" in listing

    out = tmp / "directory.json"
    assert main(["participants", "export", "--out", str(out)]) == 0
    public = test_pki.root / "hub" / "dev-hub-token-1.pub.pem"
    assert main(["participants", "verify-export", str(out), "--hub-public-key", str(public)]) == 0
    exported = verify_export(out, public)
    assert not exported.participants["gh-gsa"].active
    assert exported.key("gh-gsa", "gh-1").revoked
    out.write_bytes(out.read_bytes().replace(b"suspended", b"active   "))
    with pytest.raises(ConfigError, match="does not verify"):
        verify_export(out, public)


def test_a_registry_imported_by_another_process_at_the_same_moment_is_not_an_error(
    hub, test_pki, monkeypatch
):
    """Two hub processes starting together import the same registry file: the one that loses the
    race on the participants' unique key imports again and finds every row there."""
    from hub.store.directory import DirectoryRepository

    seen = DirectoryRepository.participant
    raced: list[str] = []

    def as_if_not_there_yet(self, participant_id):  # what the loser saw before the winner committed
        if not raced:
            raced.append(participant_id)
            return None
        return seen(self, participant_id)

    monkeypatch.setattr(DirectoryRepository, "participant", as_if_not_there_yet)
    registry = Directory.load(test_pki.root / "registry.json")
    assert hub.admin.import_registry(registry) == (0, 0)
    assert raced  # the first pass did try to add a participant that was there
