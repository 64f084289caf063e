"""Certificates and keys: the development PKI (``spe-hub dev-pki``) and the minting tests use.

Development material is marked as such, in the material itself so that the
marks travel with it wherever it is copied (``development_marks``): every
certificate carries the organisation DEV_ORGANISATION and the certificate
policy DEV_POLICY_OID, the CA's key identifier starts with DEV_KEY_ID_PREFIX
(so whatever the CA signs names it in its authority key identifier), every
private key's scalar starts with DEV_KEY_TAG, the master key with
DEV_MASTER_KEY_PREFIX, and the registry says ``"development": true`` for
itself and for each signing key. The hub refuses all of them in production,
and also any key or certificate that is the same as one of the local
development PKI's files, however renamed, re-encoded or stripped of its
comments (``material_fingerprints``): that also covers a development PKI made
before the marks. docs/trust.md says what neither can catch.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from hub.config import DEV_PKI_DIR, DEV_TRUST_DOMAIN
from hub.domain import signing
from hub.domain.directory import REGISTRY_FORMAT

DEV_ORGANISATION = "SPE Hub DEVELOPMENT PKI - NOT FOR PRODUCTION"
DEV_TOKEN_KEY_PREFIX = "dev-"  # noqa: S105 (a key-id prefix, not a secret)
# A certificate policy of our own under 2.999, the arc X.660 keeps for examples and documentation
# (nothing real is registered there), its arcs spelling "SPEHUB-DEV". Each arc fits 31 bits: Go's
# crypto/x509 (grpcurl, many gateways) refuses a certificate with a larger one, such as a UUID arc.
DEV_POLICY_OID = x509.ObjectIdentifier("2.999.83.80.69.72.85.66.45.68.69.86")
# The first bytes of the development CA's subject key identifier (the other 7 are random): a tool
# that writes an authority key identifier copies it into every certificate the CA signs.
DEV_KEY_ID_PREFIX = b"SPEHUB-DEV-CA"
# The top 64 of a development private key's 256 scalar bits (the other 192 are random: plenty for
# development, and whatever encoding the key is put in, its scalar says where it comes from).
DEV_KEY_TAG = int.from_bytes(b"SPEHUBDV", "big")
DEV_KEY_TAG_SHIFT = 192
# The first 8 of the development master key's 32 bytes (the other 24 are random).
DEV_MASTER_KEY_PREFIX = b"SPEHUBDV"


@dataclass(frozen=True)
class DemoParticipant:
    id: str
    country_code: str
    kind: str
    display_name: str


DEMO_PARTICIPANTS = (
    DemoParticipant("sn-anpej", "SN", "origin_spe", "Senegal - ANPEJ (demo)"),
    DemoParticipant("ml-anpe", "ML", "origin_spe", "Mali - ANPE (demo)"),
    DemoParticipant("ma-anapec", "MA", "origin_spe", "Morocco - ANAPEC (demo)"),
    DemoParticipant("bj-anpe", "BJ", "origin_spe", "Benin - ANPE (demo)"),
    DemoParticipant("cm-fne", "CM", "origin_spe", "Cameroon - FNE (demo)"),
    DemoParticipant("tg-anpe", "TG", "origin_spe", "Togo - ANPE (demo)"),
    DemoParticipant("gh-pec", "GH", "origin_spe", "Ghana - Public Employment Centres (demo)"),
    DemoParticipant("cv-iefp", "CV", "origin_spe", "Cape Verde - IEFP (demo)"),
    DemoParticipant("tn-aneti", "TN", "origin_spe", "Tunisia - ANETI (demo)"),
    DemoParticipant("mr-techghil", "MR", "origin_spe", "Mauritania - TECHGHIL (demo)"),
    DemoParticipant("fr-francetravail", "FR", "destination_agency", "France Travail (demo)"),
    DemoParticipant("se-arbetsformedlingen", "SE", "destination_agency", "Arbetsförmedlingen (demo)"),
    DemoParticipant("eu-eures", "EU", "destination_agency", "EURES (demo)"),
)


@dataclass(frozen=True)
class Issued:
    """A certificate and its private key, as PEM."""

    cert_pem: bytes
    key_pem: bytes
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey


def _key(development: bool = False) -> ec.EllipticCurvePrivateKey:
    if not development:
        return ec.generate_private_key(ec.SECP256R1())
    random = int.from_bytes(os.urandom(DEV_KEY_TAG_SHIFT // 8), "big")
    return ec.derive_private_key((DEV_KEY_TAG << DEV_KEY_TAG_SHIFT) | random, ec.SECP256R1())


def is_dev_private_key(key: object) -> bool:
    """True if ``key`` is an EC private key made by the development PKI (its scalar carries DEV_KEY_TAG)."""
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        return False
    return key.private_numbers().private_value >> DEV_KEY_TAG_SHIFT == DEV_KEY_TAG


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def make_ca(
    organisation: str = DEV_ORGANISATION, common_name: str = "SPE Hub dev CA", days: int = 3650
) -> Issued:
    development = organisation == DEV_ORGANISATION
    key = _key(development)
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )
    now = datetime.now(UTC)
    key_id = (
        x509.SubjectKeyIdentifier(DEV_KEY_ID_PREFIX + os.urandom(20 - len(DEV_KEY_ID_PREFIX)))
        if development
        else x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(key_id, critical=False)
    )
    cert = _mark(builder, development).sign(key, hashes.SHA256())
    return Issued(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key), cert, key)


def _mark(builder: x509.CertificateBuilder, development: bool) -> x509.CertificateBuilder:
    """A development certificate carries the development policy."""
    if not development:
        return builder
    policy = x509.PolicyInformation(DEV_POLICY_OID, ["SPE Hub development PKI - not for production"])
    return builder.add_extension(x509.CertificatePolicies([policy]), critical=False)


def issue(
    ca: Issued,
    common_name: str,
    *,
    dns: tuple[str, ...] = (),
    ips: tuple[str, ...] = (),
    uris: tuple[str, ...] = (),
    server: bool = False,
    days: int = 825,
    not_before: datetime | None = None,
) -> Issued:
    """Issue a leaf certificate signed by ``ca`` (marked development if ``ca`` is)."""
    development = is_dev_private_key(ca.key)
    key = _key(development)
    start = not_before or datetime.now(UTC) - timedelta(minutes=5)
    sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
    sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    sans += [x509.UniformResourceIdentifier(u) for u in uris]
    builder = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(
                        NameOID.ORGANIZATION_NAME,
                        ca.cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value,
                    ),
                    x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                ]
            )
        )
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
                ca.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
            ),
            critical=False,
        )
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = _mark(builder, development).sign(ca.key, hashes.SHA256())
    return Issued(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key), cert, key)


def signing_key_entry(
    participant_id: str, key_id: str, public_key: ec.EllipticCurvePublicKey, not_before: datetime
) -> dict[str, object]:
    """A registry entry for a signing key."""
    return {
        "key_id": key_id,
        "algorithm": signing.ALGORITHM,
        "public_key_pem": signing.public_key_pem(public_key),
        "not_before": not_before.isoformat(),
        "not_after": None,
    }


def _write(path: Path, data: bytes, private: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    if private:
        os.chmod(path, 0o600)


def generate_dev_pki(
    out: Path,
    participants: tuple[DemoParticipant, ...] = DEMO_PARTICIPANTS,
    trust_domain: str = DEV_TRUST_DOMAIN,
    organisation: str = DEV_ORGANISATION,
) -> dict[str, object]:
    """Write a complete PKI into ``out``: CA, hub server certificate, and per participant a
    client certificate, a signing key and a registry entry. Returns the registry.

    Layout: ca.pem, ca-key.pem, hub/server.pem, hub/server-key.pem, hub/token-keys/<kid>.pem, registry.json,
    participants/<id>/{client.pem, client-key.pem, signing-key.pem}.
    """
    development = organisation == DEV_ORGANISATION
    ca = make_ca(organisation)
    _write(out / "ca.pem", ca.cert_pem)
    _write(out / "ca-key.pem", ca.key_pem, private=True)
    server = issue(ca, "spe-hub", dns=("localhost",), ips=("127.0.0.1", "::1"), server=True)
    _write(out / "hub" / "server.pem", server.cert_pem)
    _write(out / "hub" / "server-key.pem", server.key_pem, private=True)
    # The hub's own key for access tokens and directory exports; its kid is the file name.
    kid = f"{DEV_TOKEN_KEY_PREFIX if development else ''}hub-token-1"
    token_key = _key(development)
    _write(out / "hub" / "token-keys" / f"{kid}.pem", _key_pem(token_key), private=True)
    # The master key wrapping candidates' data keys (base64; dev-marked unless for production use).
    mark = "# development master key - NOT FOR PRODUCTION\n" if development else ""
    master = (
        DEV_MASTER_KEY_PREFIX + os.urandom(32 - len(DEV_MASTER_KEY_PREFIX)) if development else os.urandom(32)
    )
    _write(
        out / "hub" / "master.key",
        (mark + base64.b64encode(master).decode() + "\n").encode(),
        private=True,
    )
    # Its public half, for whoever verifies directory exports.
    _write(out / "hub" / f"{kid}.pub.pem", signing.public_key_pem(token_key.public_key()).encode())
    now = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    entries = []
    for p in participants:
        client = issue(ca, p.id, uris=(f"spiffe://{trust_domain}/participant/{p.id}",))
        folder = out / "participants" / p.id
        _write(folder / "client.pem", client.cert_pem)
        _write(folder / "client-key.pem", client.key_pem, private=True)
        sig_key = _key(development)
        key_id = f"{p.id}-dev-1"
        _write(folder / "signing-key.pem", _key_pem(sig_key), private=True)
        (folder / "key-id").write_text(key_id + "\n")
        key_entry = signing_key_entry(p.id, key_id, sig_key.public_key(), now)
        if development:
            key_entry["development"] = True  # travels with the entry if it is copied elsewhere
        entries.append(
            {
                "id": p.id,
                "country_code": p.country_code,
                "kind": p.kind,
                "display_name": p.display_name,
                "status": "active",
                "signing_keys": [key_entry],
            }
        )
    registry: dict[str, object] = {
        "format": REGISTRY_FORMAT,
        "development": development,
        "trust_domain": trust_domain,
        "participants": entries,
    }
    _write(out / "registry.json", json.dumps(registry, indent=2, ensure_ascii=False).encode() + b"\n")
    return registry


_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----.+?-----END \1-----", re.DOTALL)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _public_fingerprint(key: object) -> str:
    der = key.public_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return "key:" + _sha(der)


def material_fingerprints(data: bytes) -> set[str]:
    """What identifies the keys and certificates in ``data``, however the file is named, encoded
    or commented: each certificate's DER and public key, each private or public key's public
    half, and for a file with no PEM block (the master key) its base64-decoded bytes."""
    out: set[str] = set()
    blocks = list(_PEM_BLOCK.finditer(data))
    for block in blocks:
        pem, label = block.group(0), block.group(1)
        try:
            if label == b"CERTIFICATE":
                cert = x509.load_pem_x509_certificate(pem)
                out |= {
                    "cert:" + _sha(cert.public_bytes(serialization.Encoding.DER)),
                    _public_fingerprint(cert.public_key()),
                }
            elif label.endswith(b"PRIVATE KEY"):
                out.add(_public_fingerprint(serialization.load_pem_private_key(pem, None).public_key()))
            elif label.endswith(b"PUBLIC KEY"):
                out.add(_public_fingerprint(serialization.load_pem_public_key(pem)))
        except (ValueError, TypeError):
            continue  # not a block this check can read: the hub's own loading reports it
    if not blocks:
        lines = [line.strip() for line in data.splitlines() if line.strip() and not line.startswith(b"#")]
        try:
            secret = base64.b64decode(b"".join(lines), validate=True)
        except ValueError:
            return out
        if secret:
            out.add("secret:" + _sha(secret))
    return out


def _der_element(der: bytes) -> bytes:
    """The first DER element of ``der`` (a TRUSTED CERTIFICATE block has OpenSSL's trust settings after it)."""
    if len(der) < 2 or der[1] < 0x80:  # short form: the length is the byte itself
        return der
    size = der[1] & 0x7F
    return der[: 2 + size + int.from_bytes(der[2 : 2 + size], "big")]


def _pem_der(block: bytes) -> bytes | None:
    """The DER inside one PEM block (RFC 7468; RFC 1421 header lines skipped), None if unreadable."""
    lines = block.splitlines()[1:-1]
    body = b"".join(line.strip() for line in lines if b":" not in line)
    try:
        return base64.b64decode(body, validate=True)
    except ValueError:
        return None


def _certificate_marks(cert: x509.Certificate) -> list[str]:
    marks = [
        f"its {role} organisation is {DEV_ORGANISATION!r}"
        for role, name in (("subject", cert.subject), ("issuer", cert.issuer))
        if any(a.value == DEV_ORGANISATION for a in name.get_attributes_for_oid(NameOID.ORGANIZATION_NAME))
    ]
    for extension in cert.extensions:
        value = extension.value
        if isinstance(value, x509.CertificatePolicies) and any(
            p.policy_identifier == DEV_POLICY_OID for p in value
        ):
            marks.append(f"it carries the development certificate policy {DEV_POLICY_OID.dotted_string}")
        elif isinstance(value, x509.SubjectKeyIdentifier) and value.digest.startswith(DEV_KEY_ID_PREFIX):
            marks.append("it is a development CA (its subject key identifier)")
        elif isinstance(value, x509.AuthorityKeyIdentifier) and (value.key_identifier or b"").startswith(
            DEV_KEY_ID_PREFIX
        ):
            marks.append("a development CA signed it (its authority key identifier)")
        elif isinstance(value, x509.SubjectAlternativeName) and any(
            DEV_TRUST_DOMAIN in str(n.value) for n in value
        ):
            marks.append(f"it names the development trust domain {DEV_TRUST_DOMAIN}")
    return marks


def _private_key_marks(der: bytes) -> list[str]:
    try:
        key = serialization.load_der_private_key(der, None)
    except (ValueError, TypeError):
        return []
    if not is_dev_private_key(key):
        return []
    return ["it is a development private key (its scalar carries the development tag)"]


def development_marks(data: bytes) -> list[str]:
    """Why ``data``, a file of certificates or private keys in PEM (whatever the block labels) or
    DER, is development material: one reason per mark found, none if it carries none. Reasons
    name the mark, never the material."""
    blocks = [(m.group(1), _pem_der(m.group(0))) for m in _PEM_BLOCK.finditer(data)]
    if not blocks:
        blocks = [(b"CERTIFICATE", data), (b"PRIVATE KEY", data)]
    marks: list[str] = []
    for label, der in blocks:
        if der is None:
            continue
        if label.endswith(b"CERTIFICATE"):
            try:
                marks += _certificate_marks(x509.load_der_x509_certificate(_der_element(der)))
            except ValueError:
                continue  # not a certificate this check can read: the hub's own loading reports it
        elif label.endswith(b"PRIVATE KEY"):
            marks += _private_key_marks(der)
    return marks


def is_dev_master_key(data: bytes) -> bool:
    """True if ``data``, a master key file (base64, comment lines ignored), is a development one."""
    lines = [line.strip() for line in data.splitlines() if line.strip() and not line.startswith(b"#")]
    try:
        return base64.b64decode(b"".join(lines), validate=True).startswith(DEV_MASTER_KEY_PREFIX)
    except ValueError:
        return False


def development_material(folders: Iterable[Path]) -> dict[str, str]:
    """Every key and certificate under the development PKI folders: fingerprint -> file."""
    known: dict[str, str] = {}
    for folder in folders:
        if not folder.is_dir():
            continue
        for path in sorted(folder.rglob("*")):
            if path.is_file() and path.suffix in (".pem", ".key") and path.stat().st_size < 1_000_000:
                for fingerprint in material_fingerprints(path.read_bytes()):
                    known.setdefault(fingerprint, str(path))
    return known


def development_folders() -> list[Path]:
    """Where the development PKI may be: certs/dev from the working directory and in the source tree."""
    here = Path(__file__).resolve().parent.parent / DEV_PKI_DIR
    return list(dict.fromkeys([(Path.cwd() / DEV_PKI_DIR).resolve(), here]))
