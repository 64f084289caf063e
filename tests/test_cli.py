"""The spe-hub command: demo against a real hub, offline verify, dev-pki, and serve as a real process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from prometheus_client import CollectorRegistry

from hub import pki
from hub.bootstrap import build_hub
from hub.config import Settings
from hub.entrypoints.cli import main
from hub.entrypoints.demo import run_demo


@pytest.fixture
def dev_hub(tmp_path, database_url):
    """A hub on a PKI laid out exactly as spe-hub dev-pki writes it."""
    root = tmp_path / "pki"
    pki.generate_dev_pki(root)
    settings = Settings(
        listen_address="127.0.0.1:0",
        metrics_address="",
        database_url=database_url,
        tls_cert_file=root / "hub" / "server.pem",
        tls_key_file=root / "hub" / "server-key.pem",
        client_ca_file=root / "ca.pem",
        registry_file=root / "registry.json",
        token_keys_dir=root / "hub" / "token-keys",
        master_key_file=root / "hub" / "master.key",
        keystore_url=f"sqlite:///{tmp_path / 'keys.sqlite3'}",
    )
    hub = build_hub(settings, metrics_registry=CollectorRegistry())
    yield hub, root
    hub.stop(0)


def test_demo_runs_the_whole_exchange(dev_hub, tmp_path):
    hub, root = dev_hub
    lines: list[str] = []
    counts = run_demo(f"127.0.0.1:{hub.port}", root, tmp_path / "out", say=lines.append)
    assert counts == {"accepted": 5, "duplicate": 5, "found": 3, "delivered": 1}
    assert any("found sn-cand-1" in line for line in lines)
    assert (tmp_path / "out" / "offer.envelope.pb").exists()


def test_verify_accepts_a_good_envelope_and_refuses_a_tampered_one(dev_hub, tmp_path, capsys):
    hub, root = dev_hub
    run_demo(f"127.0.0.1:{hub.port}", root, tmp_path / "out", say=lambda _line: None)
    good = tmp_path / "out" / "offer.envelope.pb"
    registry = str(root / "registry.json")
    assert main(["verify", str(good), "--registry", registry]) == 0
    assert "OK: spehub.v1.JobOffer 'ft-offer-1'" in capsys.readouterr().out

    from google.protobuf import json_format
    from spehub.v1 import envelope_pb2

    env = envelope_pb2.SignedEnvelope.FromString(good.read_bytes())
    as_json = tmp_path / "offer.json"
    as_json.write_text(json_format.MessageToJson(env))
    assert main(["verify", str(as_json), "--registry", registry]) == 0

    env.payload = env.payload.replace(b"Perpignan", b"Perpignam")
    bad = tmp_path / "tampered.pb"
    bad.write_bytes(env.SerializeToString())
    assert main(["verify", str(bad), "--registry", registry]) == 2
    assert "SIGNATURE_INVALID" in capsys.readouterr().err

    junk = tmp_path / "junk.pb"
    junk.write_bytes(b"\xff\xff\xff")
    assert main(["verify", str(junk), "--registry", registry]) == 2

    # A high-S signature (as clients before the low-S rule made half of theirs) still verifies
    # offline, and verify says the hub would now refuse it.
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

    from hub.domain import signing

    env = envelope_pb2.SignedEnvelope.FromString(good.read_bytes())
    r, s = decode_dss_signature(env.signature)
    env.signature = encode_dss_signature(r, 2 * signing.HALF_ORDER + 1 - s)
    high = tmp_path / "high-s.pb"
    high.write_bytes(env.SerializeToString())
    capsys.readouterr()
    assert main(["verify", str(high), "--registry", registry]) == 0
    assert "high-S form" in capsys.readouterr().out
    assert main(["verify", str(good), "--registry", registry]) == 0
    assert "high-S" not in capsys.readouterr().out


def test_dev_pki_command_writes_and_refuses_to_overwrite(tmp_path, capsys):
    out = tmp_path / "dev"
    assert main(["dev-pki", "--out", str(out)]) == 0
    for rel in ("ca.pem", "hub/server.pem", "registry.json", "participants/sn-anpej/signing-key.pem"):
        assert (out / rel).exists(), rel
    assert oct((out / "participants/sn-anpej/client-key.pem").stat().st_mode & 0o777) == "0o600"
    assert main(["dev-pki", "--out", str(out)]) == 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.processes
def test_serve_with_no_arguments_then_sigterm_shuts_down_gracefully(tmp_path):
    """`spe-hub serve` in an empty folder: dev PKI generated, SQLite created, health SERVING, clean exit."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    port, metrics_port = _free_port(), _free_port()
    env = {
        **os.environ,
        "SPEHUB_LISTEN": f"127.0.0.1:{port}",
        "SPEHUB_METRICS_LISTEN": f"127.0.0.1:{metrics_port}",
    }
    env.pop("SPEHUB_ENV", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "hub.entrypoints.cli", "serve"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        root = tmp_path / "certs" / "dev"
        deadline = time.monotonic() + 30
        status = None
        while time.monotonic() < deadline and status is None:
            time.sleep(0.3)
            if not (root / "participants" / "sn-anpej" / "client.pem").exists():
                continue
            folder = root / "participants" / "sn-anpej"
            creds = grpc.ssl_channel_credentials(
                (root / "ca.pem").read_bytes(),
                (folder / "client-key.pem").read_bytes(),
                (folder / "client.pem").read_bytes(),
            )
            with grpc.secure_channel(f"127.0.0.1:{port}", creds) as channel:
                try:
                    status = (
                        health_pb2_grpc.HealthStub(channel)
                        .Check(health_pb2.HealthCheckRequest(), timeout=2)
                        .status
                    )
                except grpc.RpcError:
                    continue
        assert status == health_pb2.HealthCheckResponse.SERVING
        assert (tmp_path / "var" / "spehub.sqlite3").exists()
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0
        assert "shutting down" in output and "stopped" in output
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.processes
def test_serve_refuses_bad_settings_with_a_clear_message(tmp_path):
    env = {**os.environ, "SPEHUB_ENV": "production"}
    result = subprocess.run(
        [sys.executable, "-m", "hub.entrypoints.cli", "serve"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "SPEHUB_TLS_CERT must be set in production" in result.stderr
    assert not Path(tmp_path / "certs").exists()


def test_a_newcomers_mistakes_get_one_line_and_an_exit_code(tmp_path, capsys, monkeypatch, test_pki):
    """No traceback: a missing file, a missing registry, an unreachable hub, a missing code-list
    folder."""
    registry = str(test_pki.root / "registry.json")
    assert main(["verify", str(tmp_path / "missing.pb"), "--registry", registry]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "missing.pb: No such file or directory" in err
    assert main(["verify", str(tmp_path / "missing.pb"), "--registry", str(tmp_path / "none.json")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "none.json does not exist" in err
    port = _free_port()  # nothing listens there
    demo = [
        "demo",
        "--hub",
        f"127.0.0.1:{port}",
        "--pki",
        str(test_pki.root),
        "--out",
        str(tmp_path / "demo"),
    ]
    assert main(demo) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"127.0.0.1:{port} answered UNAVAILABLE" in err[0]
    assert main(["codelists", "import", str(tmp_path / "nowhere")]) == 2
    assert "Traceback" not in capsys.readouterr().err
    # Every client command names the hub with --hub, whose default comes from SPEHUB_TARGET.
    monkeypatch.setenv("SPEHUB_TARGET", f"127.0.0.1:{port}")
    from hub.entrypoints.cli import build_parser

    parser = build_parser()
    for argv in (
        ["demo"],
        ["gateway", "send", "tabular", "--participant", "x"],
        ["records", "publish", "offer", "f", "--participant", "x"],
    ):
        assert parser.parse_args(argv).hub == f"127.0.0.1:{port}", argv


def test_help_shows_defaults_and_the_adapters(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "300")  # one line an option: argparse wraps at the terminal's width
    with pytest.raises(SystemExit):
        main(["gateway", "send", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "(default: certs/dev)" in out and "nav-ads" in out and "eures-hrxml" in out


def test_commands_other_than_serve_do_not_print_alembics_migration_lines(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SPEHUB_DATABASE_URL", f"sqlite:///{tmp_path / 'hub.sqlite3'}")
    assert main(["stats"]) == 0
    captured = capsys.readouterr()
    assert "alembic" not in captured.err and "Running upgrade" not in captured.err
