"""Settings from the environment, and the refusal of development material in production."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from hub import pki
from hub.bootstrap import build_hub
from hub.config import Settings
from hub.errors import ConfigError
from tests.conftest import hub_settings


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
        ({"SPEHUB_DATABASE_URL": "mysql://x"}, "SPEHUB_DATABASE_URL"),
        ({"SPEHUB_TRUST_DOMAIN": "spiffe://x"}, "SPEHUB_TRUST_DOMAIN"),
        ({"SPEHUB_ENV": "production"}, "SPEHUB_TLS_CERT"),
    ],
)
def test_invalid_settings_name_the_variable(env, message):
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env)


def _production_env(root: Path, **extra: str) -> dict[str, str]:
    env = {
        "SPEHUB_ENV": "production",
        "SPEHUB_TLS_CERT": str(root / "hub" / "server.pem"),
        "SPEHUB_TLS_KEY": str(root / "hub" / "server-key.pem"),
        "SPEHUB_CLIENT_CA": str(root / "ca.pem"),
        "SPEHUB_REGISTRY": str(root / "registry.json"),
        "SPEHUB_TOKEN_KEYS": str(root / "hub" / "token-keys"),
        "SPEHUB_MASTER_KEY_FILE": str(root / "hub" / "master.key"),
        "SPEHUB_KEYSTORE_URL": f"sqlite:///{root / 'keys.sqlite3'}",
        "SPEHUB_DATABASE_URL": "sqlite:///:memory:",
        "SPEHUB_TRUST_DOMAIN": "spehub.example.org",
        "SPEHUB_LISTEN": "127.0.0.1:0",
        "SPEHUB_METRICS_LISTEN": "",
    }
    env.update(extra)
    return env


def test_production_refuses_the_development_trust_domain():
    with pytest.raises(ConfigError, match="development trust domain"):
        Settings.from_env(_production_env(Path("/x"), SPEHUB_TRUST_DOMAIN="dev.spehub.invalid"))


def test_production_refuses_development_pki(tmp_path):
    pki.generate_dev_pki(tmp_path, trust_domain="spehub.example.org")
    settings = Settings.from_env(_production_env(tmp_path))
    with pytest.raises(ConfigError, match="development"):
        build_hub(settings, metrics_registry=CollectorRegistry())


def test_production_starts_with_production_material(tmp_path):
    import json

    pki.generate_dev_pki(tmp_path, trust_domain="spehub.example.org", organisation="Partnership PKI")
    registry = json.loads((tmp_path / "registry.json").read_text())
    assert registry["development"] is False
    hub = build_hub(Settings.from_env(_production_env(tmp_path)), metrics_registry=CollectorRegistry())
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
