"""The participant registry file: each mistake is named with where it is."""

from __future__ import annotations

import copy
import json

import pytest

from hub.domain.directory import Directory
from hub.errors import ConfigError


@pytest.fixture
def registry(test_pki) -> dict:
    return json.loads((test_pki.root / "registry.json").read_text())


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda r: r.update(format="other"), "format"),
        (lambda r: r["participants"][0].update(id="Bad Id"), r"participants\[0\]\.id"),
        (lambda r: r["participants"][1].update(id=r["participants"][0]["id"]), "registered twice"),
        (lambda r: r["participants"][0].update(country_code="XX"), "country_code"),
        (lambda r: r["participants"][0].update(kind="bank"), "kind"),
        (lambda r: r["participants"][0].update(status="maybe"), "status"),
        (lambda r: r["participants"][0]["signing_keys"][0].update(algorithm="RS256"), "algorithm"),
        (lambda r: r["participants"][0]["signing_keys"][0].update(public_key_pem="junk"), "PEM"),
        (
            lambda r: r["participants"][0]["signing_keys"][0].update(not_before="2026-01-01T00:00:00"),
            "time zone",
        ),
        (lambda r: r["participants"][0].pop("kind"), "missing 'kind'"),
    ],
)
def test_bad_registry_entries_are_named(registry, mutate, message):
    bad = copy.deepcopy(registry)
    mutate(bad)
    with pytest.raises(ConfigError, match=message):
        Directory.from_dict(bad)


def test_ed25519_key_is_refused(registry):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    pem = (
        ed25519.Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    registry["participants"][0]["signing_keys"][0]["public_key_pem"] = pem
    with pytest.raises(ConfigError, match="P-256"):
        Directory.from_dict(registry)


def test_key_id_longer_than_the_store_allows_is_refused(registry):
    registry["participants"][0]["signing_keys"][0]["key_id"] = "k" * 200
    with pytest.raises(ConfigError, match="key_id"):
        Directory.from_dict(registry)
