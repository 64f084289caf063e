"""The participant directory: who may connect, from which country, with which signing keys.

Loaded from the registry file named by SPEHUB_REGISTRY (JSON, format
``spehub-registry/1``). A participant is identified on the wire by the URI SAN
``spiffe://<trust domain>/participant/<id>`` of its client certificate.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from hub.domain import codes, records, signing
from hub.errors import ConfigError, SignatureError

REGISTRY_FORMAT = "spehub-registry/1"
PARTICIPANT_ID = records.PARTICIPANT_ID
HEX64 = records.HEX64
KEY_ID = records.RECORD_ID


class ParticipantKind(StrEnum):
    """What a participant does in the partnership."""

    ORIGIN_SPE = "origin_spe"
    DESTINATION_AGENCY = "destination_agency"
    OPERATOR = "operator"


@dataclass(frozen=True)
class SigningKey:
    """A participant's public signing key and the window in which it may sign."""

    participant_id: str
    key_id: str
    public_key: ec.EllipticCurvePublicKey
    not_before: datetime
    not_after: datetime | None = None
    revoked_at: datetime | None = None
    public_key_pem: str = ""
    # Marked development in the registry it came from (``spe-hub dev-pki`` marks each of its keys):
    # a production hub refuses it (docs/trust.md).
    development: bool = False

    def valid_at(self, when: datetime) -> bool:
        """True if a signature made at ``when`` may use this key (rotated-out keys keep their past)."""
        return self.not_before <= when and (self.not_after is None or when < self.not_after)

    @property
    def revoked(self) -> bool:
        """A revoked key verifies nothing any more, whatever the signing time claims."""
        return self.revoked_at is not None


@dataclass(frozen=True)
class Participant:
    """A registered service: an origin SPE, a destination agency or an operator."""

    id: str
    country_code: str
    kind: ParticipantKind
    display_name: str
    active: bool = True


@dataclass(frozen=True)
class Directory:
    """Participants and their keys, read-only once loaded."""

    trust_domain: str
    development: bool
    participants: dict[str, Participant] = field(default_factory=dict)
    keys: dict[tuple[str, str], SigningKey] = field(default_factory=dict)
    revoked_certificates: frozenset[str] = frozenset()
    version: int = 0

    @property
    def uri_prefix(self) -> str:
        return f"spiffe://{self.trust_domain}/participant/"

    def participant_uri(self, participant_id: str) -> str:
        """The URI SAN a participant's client certificate carries."""
        return self.uri_prefix + participant_id

    def participant_for_uri(self, uri: str) -> Participant | None:
        """The participant a certificate URI SAN names, or None if it names none we know."""
        if not uri.startswith(self.uri_prefix):
            return None
        return self.participants.get(uri[len(self.uri_prefix) :])

    def key(self, participant_id: str, key_id: str) -> SigningKey | None:
        return self.keys.get((participant_id, key_id))

    def keys_of(self, participant_id: str) -> list[SigningKey]:
        """The participant's keys, oldest first."""
        return sorted(
            (k for k in self.keys.values() if k.participant_id == participant_id), key=lambda k: k.not_before
        )

    def to_dict(self) -> dict[str, Any]:
        """The registry format (spehub-registry/1), revocations included: what an export carries."""
        return {
            "format": REGISTRY_FORMAT,
            "development": self.development,
            "trust_domain": self.trust_domain,
            "revoked_certificates": sorted(self.revoked_certificates),
            "participants": [
                {
                    "id": p.id,
                    "country_code": p.country_code,
                    "kind": p.kind.value,
                    "display_name": p.display_name,
                    "status": "active" if p.active else "suspended",
                    "signing_keys": [
                        {
                            "key_id": k.key_id,
                            "algorithm": signing.ALGORITHM,
                            "public_key_pem": k.public_key_pem,
                            "not_before": k.not_before.isoformat(),
                            "not_after": k.not_after.isoformat() if k.not_after else None,
                            "revoked_at": k.revoked_at.isoformat() if k.revoked_at else None,
                        }
                        | ({"development": True} if k.development else {})
                        for k in self.keys_of(p.id)
                    ],
                }
                for p in sorted(self.participants.values(), key=lambda p: p.id)
            ],
        }

    def origin_spes_in(self, country_codes: Iterable[str]) -> list[Participant]:
        """Active origin SPEs of the given countries, sorted by id."""
        wanted = set(country_codes)
        return sorted(
            (
                p
                for p in self.participants.values()
                if p.active and p.kind is ParticipantKind.ORIGIN_SPE and p.country_code in wanted
            ),
            key=lambda p: p.id,
        )

    @classmethod
    def load(cls, path: Path) -> Directory:
        """Read and validate a registry file. Raises ConfigError naming the entry at fault."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"registry file {path} does not exist (SPEHUB_REGISTRY)") from None
        except (OSError, ValueError) as exc:
            raise ConfigError(f"registry file {path} is not readable JSON: {exc}") from exc
        return cls.from_dict(data, str(path))

    @classmethod
    def from_dict(cls, data: Any, origin: str = "registry") -> Directory:
        """Build a directory from the registry's JSON structure. Raises ConfigError."""
        if not isinstance(data, dict) or data.get("format") != REGISTRY_FORMAT:
            raise ConfigError(f"{origin}: 'format' must be {REGISTRY_FORMAT!r}")
        participants: dict[str, Participant] = {}
        keys: dict[tuple[str, str], SigningKey] = {}
        for i, entry in enumerate(data.get("participants", [])):
            where = f"{origin}: participants[{i}]"
            try:
                pid = entry["id"]
                if not isinstance(pid, str) or not PARTICIPANT_ID.fullmatch(pid):
                    raise ConfigError(f"{where}.id must match {PARTICIPANT_ID.pattern}")
                if pid in participants:
                    raise ConfigError(f"{where}.id {pid!r} is registered twice")
                country = entry["country_code"]
                if not codes.is_country(country) and country != "EU":
                    raise ConfigError(f"{where}.country_code {country!r} is not an ISO 3166-1 alpha-2 code")
                try:
                    kind = ParticipantKind(entry["kind"])
                except ValueError:
                    raise ConfigError(
                        f"{where}.kind must be one of {[k.value for k in ParticipantKind]}"
                    ) from None
                status = entry.get("status", "active")
                if status not in ("active", "suspended"):
                    raise ConfigError(f"{where}.status must be 'active' or 'suspended'")
                participants[pid] = Participant(
                    pid, country, kind, str(entry.get("display_name", pid)), status == "active"
                )
                for j, k in enumerate(entry.get("signing_keys", [])):
                    kwhere = f"{where}.signing_keys[{j}]"
                    if k.get("algorithm") != signing.ALGORITHM:
                        raise ConfigError(f"{kwhere}.algorithm must be {signing.ALGORITHM!r}")
                    kid = k["key_id"]
                    if not isinstance(kid, str) or not KEY_ID.fullmatch(kid):
                        raise ConfigError(f"{kwhere}.key_id must match {KEY_ID.pattern}")
                    if (pid, kid) in keys:
                        raise ConfigError(f"{kwhere}.key_id {kid!r} is registered twice")
                    if not isinstance(k.get("development", False), bool):
                        raise ConfigError(f"{kwhere}.development must be true or false")
                    keys[(pid, kid)] = SigningKey(
                        pid,
                        kid,
                        signing.load_public_key(k["public_key_pem"], kid),
                        _time(k["not_before"], f"{kwhere}.not_before"),
                        _time(k["not_after"], f"{kwhere}.not_after") if k.get("not_after") else None,
                        _time(k["revoked_at"], f"{kwhere}.revoked_at") if k.get("revoked_at") else None,
                        k["public_key_pem"],
                        k.get("development", False),
                    )
            except KeyError as exc:
                raise ConfigError(f"{where}: missing {exc.args[0]!r}") from None
            except SignatureError as exc:
                raise ConfigError(f"{where}: {exc}") from exc
        revoked = data.get("revoked_certificates", [])
        if not isinstance(revoked, list) or not all(
            isinstance(h, str) and HEX64.fullmatch(h) for h in revoked
        ):
            raise ConfigError(f"{origin}: revoked_certificates must be SHA-256 hashes in lower-case hex")
        return cls(
            trust_domain=str(data.get("trust_domain", "")),
            development=bool(data.get("development", False)),
            participants=participants,
            keys=keys,
            revoked_certificates=frozenset(revoked),
        )


def _time(value: str, where: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where} must be an ISO 8601 date-time, not {value!r}") from None
    if parsed.tzinfo is None:
        raise ConfigError(f"{where} must carry a time zone (e.g. 'Z' or '+00:00')")
    return parsed.astimezone(UTC)


# The directory export the hub signs, as its own kind of signed document (docs/trust.md).
EXPORT_TYPE = "spehub.v1.DirectoryExport"
EXPORT_SIGNER = "hub"


def export_signature_valid(
    public_key: object, key_id: str, seconds: int, nanos: int, body: bytes, signature: bytes
) -> bool:
    """Whether ``signature`` is the hub's signature of a directory export ``body`` signed at that time
    (in either S form: an export file made before the low-S rule still verifies)."""
    message = signing.signing_input(EXPORT_TYPE, EXPORT_SIGNER, key_id, seconds, nanos, body)
    return signing.verify(public_key, signature, message, allow_high_s=True)  # type: ignore[arg-type]
