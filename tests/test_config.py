"""Settings from the environment, and the refusal of development material in production."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from hub import pki
from hub.bootstrap import build_hub
from hub.config import Settings
from hub.errors import ConfigError
from tests.support.hubs import hub_settings, production_env


def test_defaults_are_the_embedded_development_setup():
    s = Settings.from_env({})
    assert s.env == "development"
    assert s.listen_address == "127.0.0.1:50051"
    assert s.metrics_address == "127.0.0.1:9464"
    assert s.database_url.startswith("sqlite:///")
    assert s.registry_file == Path("certs/dev/registry.json")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SPEHUB_ENV": "staging"}, "SPEHUB_ENV"),
        ({"SPEHUB_LISTEN": "50051"}, "SPEHUB_LISTEN"),
        ({"SPEHUB_MAX_MESSAGE_BYTES": "lots"}, "SPEHUB_MAX_MESSAGE_BYTES"),
        ({"SPEHUB_MAX_BATCH_RECORDS": "0"}, "SPEHUB_MAX_BATCH_RECORDS"),
        # int() and str.isdigit read the digits of other scripts (issue 25, item 5).
        ({"SPEHUB_MAX_BATCH_RECORDS": "٥٠٠"}, "SPEHUB_MAX_BATCH_RECORDS must be a whole number written"),
        ({"SPEHUB_RATE_LIMIT_BURST": "5_000"}, "SPEHUB_RATE_LIMIT_BURST must be a whole number written"),
        ({"SPEHUB_LISTEN": "127.0.0.1:٥٠٠٥١"}, "SPEHUB_LISTEN"),
        ({"SPEHUB_DATABASE_URL": "mysql://x"}, "SPEHUB_DATABASE_URL"),
        ({"SPEHUB_TRUST_DOMAIN": "spiffe://x"}, "SPEHUB_TRUST_DOMAIN"),
        ({"SPEHUB_ENV": "production"}, "SPEHUB_TLS_CERT"),
        # A read replica is a PostgreSQL replica of a PostgreSQL primary, and not the primary itself.
        ({"SPEHUB_READ_DATABASE_URL": "postgresql+psycopg://h/db"}, "SPEHUB_READ_DATABASE_URL"),
        (
            {
                "SPEHUB_DATABASE_URL": "postgresql+psycopg://h/db",
                "SPEHUB_READ_DATABASE_URL": "sqlite:///r.db",
            },
            "SPEHUB_READ_DATABASE_URL",
        ),
        (
            {
                "SPEHUB_DATABASE_URL": "postgresql+psycopg://h/db",
                "SPEHUB_READ_DATABASE_URL": "postgresql+psycopg://h/db",
            },
            "SPEHUB_READ_DATABASE_URL must name the replica",
        ),
    ],
)
def test_invalid_settings_name_the_variable(env, message):
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env)


def test_production_refuses_the_development_trust_domain():
    with pytest.raises(ConfigError, match="development trust domain"):
        Settings.from_env(production_env(Path("/x"), SPEHUB_TRUST_DOMAIN="dev.spehub.invalid"))


def test_production_refuses_development_pki(tmp_path):
    pki.generate_dev_pki(tmp_path, trust_domain="spehub.example.org")
    settings = Settings.from_env(production_env(tmp_path))
    with pytest.raises(ConfigError, match="development"):
        build_hub(settings, metrics_registry=CollectorRegistry())


def test_production_starts_with_production_material(tmp_path):
    import json

    pki.generate_dev_pki(tmp_path, trust_domain="spehub.example.org", organisation="Partnership PKI")
    registry = json.loads((tmp_path / "registry.json").read_text())
    assert registry["development"] is False
    hub = build_hub(Settings.from_env(production_env(tmp_path)), metrics_registry=CollectorRegistry())
    hub.stop(0)


def test_registry_must_match_the_trust_domain(test_pki, database_url):
    with pytest.raises(ConfigError, match="trust_domain"):
        build_hub(
            hub_settings(test_pki, database_url, trust_domain="other.invalid"),
            metrics_registry=CollectorRegistry(),
        )


def test_missing_files_are_named(test_pki, database_url, tmp_path):
    with pytest.raises(ConfigError, match="SPEHUB_TLS_KEY"):
        build_hub(
            hub_settings(test_pki, database_url, tls_key_file=tmp_path / "nope.pem"),
            metrics_registry=CollectorRegistry(),
        )


def _strip_comments(data: bytes) -> bytes:
    return b"".join(line + b"\n" for line in data.splitlines() if not line.startswith(b"#"))


def _reencode_key(data: bytes) -> bytes:
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(data, None)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def _dev_token_key(dev: Path, prod: Path) -> None:
    (source,) = (dev / "hub" / "token-keys").glob("*.pem")
    (prod / "hub" / "token-keys" / "zz-hub-token-2.pem").write_bytes(source.read_bytes())  # renamed


def _dev_master_key(dev: Path, prod: Path) -> None:
    (prod / "hub" / "master.key").write_bytes(_strip_comments((dev / "hub" / "master.key").read_bytes()))


def _dev_tls_key(dev: Path, prod: Path) -> None:
    (prod / "hub" / "server-key.pem").write_bytes(
        _reencode_key((dev / "hub" / "server-key.pem").read_bytes())
    )


def _dev_signing_key(dev: Path, prod: Path) -> None:
    import json

    from cryptography.hazmat.primitives import serialization

    private = serialization.load_pem_private_key(
        (dev / "participants" / "sn-anpej" / "signing-key.pem").read_bytes(), None
    )
    public = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    registry = json.loads((prod / "registry.json").read_text())
    registry["participants"][0]["signing_keys"][0]["public_key_pem"] = public.decode()
    (prod / "registry.json").write_text(json.dumps(registry))


@pytest.mark.parametrize(
    ("plant", "named"),
    [
        (_dev_token_key, "SPEHUB_TOKEN_KEYS (zz-hub-token-2.pem)"),
        (_dev_master_key, "SPEHUB_MASTER_KEY_FILE"),
        (_dev_tls_key, "SPEHUB_TLS_KEY"),
        (_dev_signing_key, "SPEHUB_REGISTRY: signing key"),
    ],
    ids=["token-key-renamed", "master-key-comment-stripped", "tls-key-re-encoded", "registry-signing-key"],
)
def test_production_refuses_development_keys_without_their_marks(tmp_path, monkeypatch, plant, named):
    """A development key renamed, re-encoded or stripped of its comment is still development material."""
    monkeypatch.chdir(tmp_path)
    dev = tmp_path / "certs" / "dev"
    pki.generate_dev_pki(dev)
    prod = tmp_path / "prod"
    pki.generate_dev_pki(prod, trust_domain="spehub.example.org", organisation="Partnership PKI")
    plant(dev, prod)
    with pytest.raises(ConfigError) as err:
        build_hub(Settings.from_env(production_env(prod)), metrics_registry=CollectorRegistry())
    assert named in str(err.value) and "development material" in str(err.value)
    assert "BEGIN" not in str(err.value)  # names the file, never prints key material


def test_production_material_beside_a_development_pki_starts(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    pki.generate_dev_pki(tmp_path / "certs" / "dev")
    prod = tmp_path / "prod"
    pki.generate_dev_pki(prod, trust_domain="spehub.example.org", organisation="Partnership PKI")
    build_hub(Settings.from_env(production_env(prod)), metrics_registry=CollectorRegistry()).stop(0)
