"""``spe-hub participants …``: the operator's directory commands, run on the hub's host.

They act on the store named by SPEHUB_DATABASE_URL, the same one the hub
processes read: a change applies to every running hub from its next call.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from hub import pki
from hub.bootstrap import check_signing_keys, open_store
from hub.clock import system_clock
from hub.config import Settings
from hub.domain import codes, signing
from hub.domain.directory import Directory, export_signature_valid
from hub.domain.tokens import HubKeyRing
from hub.errors import ConfigError
from hub.services.directory import (
    DirectoryAdmin,
    DirectoryProvider,
    export_directory,
)


def _admin() -> tuple[Settings, DirectoryProvider, DirectoryAdmin]:
    settings, store = open_store()
    development = not settings.production
    provider = DirectoryProvider(store, settings.trust_domain, development)
    return settings, provider, DirectoryAdmin(store, provider, system_clock, production=settings.production)


def _public_key(settings: Settings, path: Path) -> str:
    """The PEM of ``--public-key``. In production a key that is the same as a file of the local
    development PKI is refused (the store's development keys are refused by DirectoryAdmin)."""
    pem = path.read_text()
    if settings.production:
        known = pki.development_material(pki.development_folders())
        same = sorted(pki.material_fingerprints(pem.encode()) & known.keys())
        if same:
            raise ConfigError(
                f"--public-key {path} is development material (the same key as {known[same[0]]}); "
                "it is refused in production (SPEHUB_ENV)"
            )
    return pem


def _show(directory: Directory) -> None:
    for pid in sorted(directory.participants):
        p = directory.participants[pid]
        print(
            f"{p.id:24} {p.country_code}  {p.kind.value:18} {'active' if p.active else 'SUSPENDED':9} {p.display_name}"
        )
        for k in directory.keys_of(pid):
            state = (
                "revoked " + k.revoked_at.isoformat()
                if k.revoked_at
                else ("retired " + k.not_after.isoformat() if k.not_after else "current")
            )
            print(f"    key {k.key_id:32} from {k.not_before.isoformat()}  {state}")
    if directory.revoked_certificates:
        print(f"revoked certificates: {len(directory.revoked_certificates)}")


def run(args: argparse.Namespace) -> int:
    settings, provider, admin = _admin()
    action = args.action
    if action == "list":
        _show(provider.current())
    elif action == "import":
        registry = Directory.load(Path(args.file))
        if settings.production:
            check_signing_keys(registry, args.file, pki.development_material(pki.development_folders()))
        added = admin.import_registry(registry)
        print(f"imported {added[0]} participants and {added[1]} keys (existing entries unchanged)")
    elif action == "register":
        p = admin.register(
            args.id,
            args.country,
            args.kind,
            args.name,
            args.key_id,
            _public_key(settings, Path(args.public_key)),
        )
        print(f"registered {p.id} ({p.kind.value}, {p.country_code}) with key {args.key_id}")
    elif action in ("suspend", "activate"):
        p = admin.set_status(args.id, action == "activate")
        print(f"{p.id} is now {'active' if p.active else 'suspended'}")
    elif action == "rotate-key":
        k = admin.rotate_key(args.id, args.key_id, _public_key(settings, Path(args.public_key)))
        print(
            f"{args.id}: key {k.key_id} signs from {k.not_before.isoformat()}; earlier keys retired at that instant"
        )
    elif action == "revoke-key":
        k = admin.revoke_key(args.id, args.key_id)
        print(f"{args.id}: key {k.key_id} revoked at {k.revoked_at.isoformat() if k.revoked_at else '?'}")
    elif action == "revoke-cert":
        if args.cert:
            cert = x509.load_pem_x509_certificate(Path(args.cert).read_bytes())
            sha = hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest()
        else:
            sha = args.sha256
        at = admin.revoke_certificate(sha)
        print(f"certificate {sha} revoked at {at.isoformat()}")
    elif action == "export":
        body, key_id, seconds, nanos, signature = export_directory(
            provider.current(), HubKeyRing.load(settings.token_keys_dir), datetime.now(UTC)
        )
        out = Path(args.out)
        out.write_bytes(body)
        Path(f"{out}.sig.json").write_text(
            json.dumps(
                {
                    "key_id": key_id,
                    "signed_at": f"{seconds}.{nanos:09d}",
                    "signature": base64.b64encode(signature).decode(),
                },
                indent=2,
            )
        )
        print(f"directory written to {out}, signature to {out}.sig.json (hub key {key_id})")
    elif action == "verify-export":
        verify_export(Path(args.file), Path(args.hub_public_key))
        print(f"OK: {args.file} is the hub's signed directory")
    return 0


def verify_export(path: Path, hub_public_key: Path) -> Directory:
    """Check a directory export against the hub's public key and load it. Raises ConfigError."""
    sig = json.loads(Path(f"{path}.sig.json").read_text())
    seconds, _, nanos = str(sig.get("signed_at", "")).partition(".")
    if not (codes.ascii_digits(seconds) and codes.ascii_digits(nanos)):
        raise ConfigError(f"{path}.sig.json: signed_at must be <unix seconds>.<nanoseconds>, digits 0-9")
    key = signing.load_public_key(hub_public_key.read_bytes(), sig["key_id"])
    body, signature = path.read_bytes(), base64.b64decode(sig["signature"])
    if not export_signature_valid(key, sig["key_id"], int(seconds), int(nanos), body, signature):
        raise ConfigError(f"{path}: the directory signature does not verify with {hub_public_key}")
    return Directory.load(path)


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser(
        "participants", help="operator commands on the directory (acts on SPEHUB_DATABASE_URL)"
    )
    actions = parser.add_subparsers(dest="action", required=True)
    actions.add_parser("list", help="participants, keys and their state")
    p = actions.add_parser("import", help="add what a registry file has and the store lacks")
    p.add_argument("file")
    p = actions.add_parser("register", help="register a participant with its first signing key")
    p.add_argument("id")
    p.add_argument("--country", required=True)
    p.add_argument("--kind", required=True, choices=["origin_spe", "destination_agency", "operator"])
    p.add_argument("--name", required=True)
    p.add_argument("--key-id", required=True)
    p.add_argument("--public-key", required=True, help="PEM file of the P-256 public key")
    for name in ("suspend", "activate"):
        p = actions.add_parser(name, help=f"{name} a participant (effective on its next call)")
        p.add_argument("id")
    p = actions.add_parser("rotate-key", help="add a new signing key and retire the others now")
    p.add_argument("id")
    p.add_argument("--key-id", required=True)
    p.add_argument("--public-key", required=True)
    p = actions.add_parser("revoke-key", help="revoke a signing key now (compromise)")
    p.add_argument("id")
    p.add_argument("key_id")
    p = actions.add_parser("revoke-cert", help="revoke a client certificate now")
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--cert", help="PEM file of the certificate")
    group.add_argument("--sha256", help="SHA-256 of the certificate's DER, hex")
    p = actions.add_parser("export", help="write the directory, signed by the hub, for offline verification")
    p.add_argument("--out", required=True)
    p = actions.add_parser("verify-export", help="check an export's signature with the hub's public key")
    p.add_argument("file")
    p.add_argument("--hub-public-key", required=True)
    parser.set_defaults(func=run)
