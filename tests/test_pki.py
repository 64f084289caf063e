"""The development PKI is recognisable wherever it is copied: a production hub refuses to start with
it, and refuses to register its signing keys, on a host with no certs/dev (docs/trust.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID
from prometheus_client import CollectorRegistry

from hub import pki
from hub.bootstrap import build_hub
from hub.config import Settings
from hub.domain import signing
from hub.domain.directory import Directory
from hub.entrypoints.cli import main
from hub.errors import ConfigError
from tests.support.hubs import production_env

PARTNERSHIP = "Partnership PKI"
TRUST_DOMAIN = "spehub.example.org"


@pytest.fixture
def elsewhere(tmp_path, monkeypatch):
    """A development PKI copied to another folder, and a production PKI, on a host (working
    directory) with no certs/dev: only the marks can tell. Returns (dev, prod)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(
        pki, "development_folders", lambda: [tmp_path / "certs" / "dev"]
    )  # not the checkout's
    dev = tmp_path / "copied-from-a-laptop"
    pki.generate_dev_pki(dev, trust_domain=TRUST_DOMAIN)
    prod = tmp_path / "prod"
    pki.generate_dev_pki(prod, trust_domain=TRUST_DOMAIN, organisation=PARTNERSHIP)
    return dev, prod


def _load_key(path: Path):
    return serialization.load_pem_private_key(path.read_bytes(), None)


def _der_to_pem(cert_pem: bytes) -> bytes:
    der = x509.load_pem_x509_certificate(cert_pem).public_bytes(serialization.Encoding.DER)
    return x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM)


def _sec1(key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def _name(organisation: str, common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _certificate(subject: x509.Name, issuer: x509.Name, public_key, signer, extensions) -> x509.Certificate:
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=30))
    )
    for extension in extensions:
        builder = builder.add_extension(extension.value, extension.critical)
    return builder.sign(signer, hashes.SHA256())


def _dev_cert_der_to_pem(dev: Path, prod: Path) -> None:
    (prod / "hub" / "server.pem").write_bytes(_der_to_pem((dev / "hub" / "server.pem").read_bytes()))
    (prod / "hub" / "server-key.pem").write_bytes(_sec1(_load_key(dev / "hub" / "server-key.pem")))


def _cert_re_signed_by_the_dev_ca(dev: Path, prod: Path) -> None:
    """The development CA, renamed and re-signed by its own key with its own extensions (as
    ``openssl x509 -x509toreq -copy_extensions`` does), issues the hub's certificate for the
    production key: no development name is left anywhere."""
    ca = x509.load_pem_x509_certificate((dev / "ca.pem").read_bytes())
    ca_key = _load_key(dev / "ca-key.pem")
    renamed = _name(PARTNERSHIP, "Partnership CA 2")
    new_ca = _certificate(renamed, renamed, ca.public_key(), ca_key, ca.extensions)
    server = x509.load_pem_x509_certificate((prod / "hub" / "server.pem").read_bytes())
    authority = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
        ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    )
    extensions = [
        x509.Extension(e.oid, e.critical, authority)
        if isinstance(e.value, x509.AuthorityKeyIdentifier)
        else e
        for e in server.extensions
    ]
    leaf = _certificate(server.subject, renamed, server.public_key(), ca_key, extensions)
    (prod / "hub" / "server.pem").write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    ca_bundle = (prod / "ca.pem").read_bytes() + new_ca.public_bytes(serialization.Encoding.PEM)
    (prod / "ca.pem").write_bytes(ca_bundle)


def _dev_tls_key_in_a_production_cert(dev: Path, prod: Path) -> None:
    """The production CA certifies the development server key: the certificate is clean, the key is not."""
    dev_key = _load_key(dev / "hub" / "server-key.pem")
    prod_ca = x509.load_pem_x509_certificate((prod / "ca.pem").read_bytes())
    server = x509.load_pem_x509_certificate((prod / "hub" / "server.pem").read_bytes())
    leaf = _certificate(
        server.subject,
        prod_ca.subject,
        dev_key.public_key(),
        _load_key(prod / "ca-key.pem"),
        server.extensions,
    )
    (prod / "hub" / "server.pem").write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    (prod / "hub" / "server-key.pem").write_bytes(_sec1(dev_key))


def _dev_token_key_renamed(dev: Path, prod: Path) -> None:
    (source,) = (dev / "hub" / "token-keys").glob("*.pem")
    (prod / "hub" / "token-keys" / "zz-hub-token-2.pem").write_bytes(_sec1(_load_key(source)))


def _dev_master_key_stripped(dev: Path, prod: Path) -> None:
    lines = (dev / "hub" / "master.key").read_bytes().splitlines()
    (prod / "hub" / "master.key").write_bytes(
        b"".join(line + b"\n" for line in lines if not line.startswith(b"#"))
    )


def _dev_registry_entry_copied(dev: Path, prod: Path) -> None:
    dev_registry = json.loads((dev / "registry.json").read_text())
    registry = json.loads((prod / "registry.json").read_text())
    registry["participants"][0] = dev_registry["participants"][0]
    (prod / "registry.json").write_text(json.dumps(registry))


@pytest.mark.parametrize(
    ("plant", "named", "mark"),
    [
        (_dev_cert_der_to_pem, "SPEHUB_TLS_CERT", "development"),
        (_cert_re_signed_by_the_dev_ca, "SPEHUB_TLS_CERT", "a development CA signed it"),
        (_dev_tls_key_in_a_production_cert, "SPEHUB_TLS_KEY", "development private key"),
        (_dev_token_key_renamed, "SPEHUB_TOKEN_KEYS (zz-hub-token-2.pem)", "development private key"),
        (_dev_master_key_stripped, "SPEHUB_MASTER_KEY_FILE", "development prefix"),
        (_dev_registry_entry_copied, "SPEHUB_REGISTRY: signing key 'sn-anpej-dev-1'", "marked development"),
    ],
    ids=[
        "cert-der-to-pem",
        "cert-re-signed-by-the-dev-ca-renamed",
        "dev-tls-key-in-a-production-cert",
        "token-key-renamed-re-encoded",
        "master-key-comment-stripped",
        "registry-entry-copied",
    ],
)
def test_production_refuses_development_material_found_anywhere(elsewhere, plant, named, mark):
    dev, prod = elsewhere
    plant(dev, prod)
    with pytest.raises(ConfigError) as err:
        build_hub(Settings.from_env(production_env(prod)), metrics_registry=CollectorRegistry())
    message = str(err.value)
    assert message.startswith(named) and mark in message and "refused in production" in message, message
    assert "\n" not in message and "BEGIN" not in message and str(dev) not in message


def test_the_production_material_it_was_planted_in_starts(elsewhere):
    """The control: the same production PKI, untouched, starts in production."""
    _, prod = elsewhere
    build_hub(Settings.from_env(production_env(prod)), metrics_registry=CollectorRegistry()).stop(0)


def test_every_development_file_carries_a_mark_and_no_production_file_does(elsewhere):
    dev, prod = elsewhere
    for root, marked in ((dev, True), (prod, False)):
        for path in [*root.rglob("*.pem")]:
            if path.name.endswith(".pub.pem"):
                continue  # a public key alone carries no mark (docs/trust.md)
            assert bool(pki.development_marks(path.read_bytes())) is marked, path
        assert pki.is_dev_master_key((root / "hub" / "master.key").read_bytes()) is marked


@pytest.mark.processes
def test_serve_refuses_development_material_in_one_line_and_exit_2(elsewhere):
    dev, prod = elsewhere
    _dev_tls_key_in_a_production_cert(dev, prod)
    env = {**os.environ, **production_env(prod, SPEHUB_DATABASE_URL=f"sqlite:///{prod / 'hub.db'}")}
    done = subprocess.run(
        [sys.executable, "-m", "hub.entrypoints.cli", "serve"],
        env=env,
        cwd=prod.parent,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    err = done.stderr.strip()
    assert done.returncode == 2 and "\n" not in err, err
    assert err.startswith("spe-hub serve: SPEHUB_TLS_KEY is development material"), err


def test_production_refuses_a_store_a_development_hub_filled(elsewhere):
    """A database filled by a development hub keeps its keys' mark: production refuses to start on it."""
    dev, prod = elsewhere
    database = f"sqlite:///{dev.parent / 'shared.db'}"
    development = {
        k: v for k, v in production_env(dev, SPEHUB_DATABASE_URL=database).items() if k != "SPEHUB_ENV"
    }
    build_hub(Settings.from_env(development), metrics_registry=CollectorRegistry()).stop(0)
    with pytest.raises(ConfigError) as err:
        build_hub(
            Settings.from_env(production_env(prod, SPEHUB_DATABASE_URL=database)),
            metrics_registry=CollectorRegistry(),
        )
    assert str(err.value).startswith("SPEHUB_DATABASE_URL: signing key") and "marked development" in str(
        err.value
    )


def _public_pem(private_key_file: Path, out: Path) -> Path:
    out.write_text(signing.public_key_pem(_load_key(private_key_file).public_key()))
    return out


def _register(key_file: Path, participant: str = "gh-gsa") -> int:
    return main(
        [
            "participants",
            "register",
            participant,
            "--country",
            "GH",
            "--kind",
            "origin_spe",
            "--name",
            "Ghana (test)",
            "--key-id",
            f"{participant}-1",
            "--public-key",
            str(key_file),
        ]
    )


def _use(monkeypatch, env: dict[str, str]) -> None:
    for name in [*env, "SPEHUB_ENV"]:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)


def test_production_refuses_to_register_development_keys(elsewhere, monkeypatch, capsys):
    dev, prod = elsewhere
    database = f"sqlite:///{dev.parent / 'directory.db'}"
    production = production_env(prod, SPEHUB_DATABASE_URL=database)
    development = {k: v for k, v in production.items() if k != "SPEHUB_ENV"}
    dev_key = _public_pem(dev / "participants" / "sn-anpej" / "signing-key.pem", dev.parent / "sn.pub.pem")

    # A development registry, or a production one with a development entry copied in: not imported.
    _use(monkeypatch, production)
    assert main(["participants", "import", str(dev / "registry.json")]) == 2
    assert (
        "registry.json: the registry is marked development; it is refused in production"
        in capsys.readouterr().err
    )
    _dev_registry_entry_copied(dev, prod)
    assert main(["participants", "import", str(prod / "registry.json")]) == 2
    assert "signing key 'sn-anpej-dev-1' of sn-anpej is marked development" in capsys.readouterr().err

    # The store a development run filled knows its keys are development ones, whatever they are renamed.
    _use(monkeypatch, development)
    assert main(["participants", "import", str(dev / "registry.json")]) == 0
    _use(monkeypatch, production)
    assert _register(dev_key) == 2
    assert "is the development key sn-anpej/sn-anpej-dev-1; refused in production" in capsys.readouterr().err
    assert (
        main(["participants", "rotate-key", "sn-anpej", "--key-id", "k-2", "--public-key", str(dev_key)]) == 2
    )
    capsys.readouterr()

    # A key of the local development PKI is refused too, whatever the store knows.
    local = prod.parent / "certs" / "dev"
    pki.generate_dev_pki(local)
    local_key = _public_pem(local / "participants" / "ml-anpe" / "signing-key.pem", dev.parent / "ml.pub.pem")
    assert _register(local_key, "ml-other") == 2
    assert f"is development material (the same key as {local}" in capsys.readouterr().err

    # A production key registers; in development, the development keys do too (unchanged).
    prod_key = _public_pem(prod / "participants" / "ml-anpe" / "signing-key.pem", dev.parent / "p.pub.pem")
    assert _register(prod_key) == 0
    _use(monkeypatch, development)
    assert _register(dev_key, "gh-dev") == 0
    assert _register(local_key, "gh-local") == 0


def test_a_registry_key_entry_carries_its_development_flag_and_nothing_else(elsewhere):
    dev, _ = elsewhere
    registry = json.loads((dev / "registry.json").read_text())
    directory = Directory.from_dict(registry)
    assert all(k.development for k in directory.keys.values())
    # The flag survives the hub's export (the registry format), and is written only when set.
    exported = directory.to_dict()
    assert Directory.from_dict(exported).keys == directory.keys
    registry["participants"][0]["signing_keys"][0]["development"] = "no"
    with pytest.raises(ConfigError, match=r"participants\[0\]\.signing_keys\[0\]\.development must be true"):
        Directory.from_dict(registry)
    for entry in registry["participants"]:
        for key in entry["signing_keys"]:
            del key["development"]
    assert "development" not in json.dumps(Directory.from_dict(registry).to_dict()["participants"])


def test_the_development_policy_oid_is_one_every_x509_library_reads():
    """Go's crypto/x509 (grpcurl's, many gateways') refuses a certificate holding an OID arc past 31
    bits ("base 128 integer too large"): a UUID arc under 2.25 made the dev PKI unusable there."""
    from hub.pki import DEV_POLICY_OID

    arcs = [int(a) for a in DEV_POLICY_OID.dotted_string.split(".")]
    assert arcs[:2] == [2, 999] and all(a < 2**31 for a in arcs)
