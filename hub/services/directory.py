"""The directory in the store: read by every call, changed by operators, visible to all replicas at once.

Every change bumps a version row in the same transaction; each call asks the
store for that version (one small query, Store.directory_version) and reloads only when it moved. So
a suspension, a revoked key or a revoked certificate applies from the next
call on, in every hub process sharing the database.
"""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime

from cryptography.hazmat.primitives.asymmetric import ec

from hub.clock import Clock, to_us
from hub.domain import codes, signing
from hub.domain.audit import AuditDraft
from hub.domain.directory import (
    EXPORT_SIGNER,
    EXPORT_TYPE,
    KEY_ID,
    PARTICIPANT_ID,
    Directory,
    Participant,
    ParticipantKind,
    SigningKey,
)
from hub.domain.records import HEX64
from hub.domain.stored import StoredKey
from hub.domain.tokens import HubKeyRing
from hub.errors import InvalidRequestError, NotFoundError, SignatureError, StoreConflictError
from hub.store.engine import Store
from hub.store.uow import UnitOfWork


def _time(us: int | None) -> datetime | None:
    return None if us is None else datetime.fromtimestamp(us / 1_000_000, UTC)


class DirectoryProvider:
    """The current directory, reloaded when the store's version moves."""

    def __init__(self, store: Store, trust_domain: str, development: bool) -> None:
        self.store = store
        self.trust_domain = trust_domain
        self.development = development
        self._lock = threading.Lock()
        self._cached: Directory | None = None
        self._parsed: dict[str, ec.EllipticCurvePublicKey] = {}

    def current(self) -> Directory:
        """The directory as of now. Raises StoreUnavailableError."""
        cached = self._cached
        if cached is not None and cached.version == self.store.directory_version():
            return cached  # every call but the first after a change: one round trip
        with self.store.unit_of_work() as uow:
            version = uow.directory.version()
            participants, keys, revoked = uow.directory.contents()
        with self._lock:
            directory = Directory(
                trust_domain=self.trust_domain,
                development=self.development,
                participants={p.id: p for p in participants},
                keys={(k.participant_id, k.key_id): self._key(k) for k in keys},
                revoked_certificates=frozenset(revoked),
                version=version,
            )
            if self._cached is None or self._cached.version <= version:
                self._cached = directory
        return directory

    def _key(self, row: StoredKey) -> SigningKey:
        pem = row.public_key_pem
        if pem not in self._parsed:
            self._parsed[pem] = signing.load_public_key(pem, row.key_id)
        return SigningKey(
            row.participant_id,
            row.key_id,
            self._parsed[pem],
            _time(row.not_before_us),  # type: ignore[arg-type]
            _time(row.not_after_us),
            _time(row.revoked_at_us),
            pem,
            bool(row.development),
        )


class DirectoryAdmin:
    """Operator acts on the directory; each is one transaction that bumps the version.

    In production (``production``) it refuses to register a public key that the store holds as a
    development key (the callers refuse registries and entries marked development before importing).
    """

    def __init__(
        self, store: Store, provider: DirectoryProvider, clock: Clock, production: bool = False
    ) -> None:
        self.store = store
        self.provider = provider
        self.clock = clock
        self.production = production

    def import_registry(self, registry: Directory) -> tuple[int, int]:
        """Add the participants and keys of a registry file that the store lacks; change nothing else.

        Returns (participants added, keys added). Hub processes starting together import the same
        file at the same moment: the one whose insert loses the race on a unique key imports again,
        and then finds the rows there.
        """
        try:
            return self._import_registry(registry)
        except StoreConflictError:
            return self._import_registry(registry)

    def _import_registry(self, registry: Directory) -> tuple[int, int]:
        added_p = added_k = 0
        with self.store.unit_of_work(write=True) as uow:
            for p in registry.participants.values():
                if uow.directory.participant(p.id) is None:
                    uow.directory.add_participant(
                        id=p.id,
                        country_code=p.country_code,
                        kind=p.kind.value,
                        display_name=p.display_name,
                        status="active" if p.active else "suspended",
                    )
                    added_p += 1
            for k in registry.keys.values():
                if uow.directory.signing_key(k.participant_id, k.key_id) is None:
                    uow.directory.add_signing_key(
                        participant_id=k.participant_id,
                        key_id=k.key_id,
                        public_key_pem=k.public_key_pem,
                        not_before_us=to_us(k.not_before),
                        not_after_us=to_us(k.not_after) if k.not_after else None,
                        revoked_at_us=to_us(k.revoked_at) if k.revoked_at else None,
                        development=k.development or registry.development,
                    )
                    added_k += 1
            for sha in registry.revoked_certificates:
                uow.directory.revoke_certificate(sha, to_us(self.clock()))
            if added_p or added_k or registry.revoked_certificates:
                uow.directory.bump_version()
            uow.commit()
        return added_p, added_k

    def register(
        self,
        participant_id: str,
        country_code: str,
        kind: str,
        display_name: str,
        key_id: str,
        public_key_pem: str,
    ) -> Participant:
        """Register a new participant with its first signing key. Raises InvalidRequestError."""
        if not PARTICIPANT_ID.fullmatch(participant_id):
            raise InvalidRequestError(f"participant id must match {PARTICIPANT_ID.pattern}", "participant_id")
        if not (codes.is_country(country_code) or country_code == "EU"):
            raise InvalidRequestError("country must be an ISO 3166-1 alpha-2 code (or EU)", "country_code")
        try:
            kind_value = ParticipantKind(kind)
        except ValueError:
            raise InvalidRequestError(
                f"kind must be one of {[k.value for k in ParticipantKind]}", "kind"
            ) from None
        self._check_key(key_id, public_key_pem)
        now = self.clock()
        with self.store.unit_of_work(write=True) as uow:
            if uow.directory.participant(participant_id) is not None:
                raise InvalidRequestError(
                    f"participant {participant_id!r} is already registered", "participant_id"
                )
            uow.directory.add_participant(
                id=participant_id,
                country_code=country_code,
                kind=kind_value.value,
                display_name=display_name,
                status="active",
            )
            uow.directory.add_signing_key(
                participant_id=participant_id,
                key_id=key_id,
                public_key_pem=public_key_pem,
                not_before_us=to_us(now),
            )
            uow.directory.bump_version()
            uow.commit()
        return self.provider.current().participants[participant_id]

    def set_status(self, participant_id: str, active: bool, actor: str = "cli") -> Participant:
        """Suspend or reactivate. Raises NotFoundError."""
        with self.store.unit_of_work(write=True) as uow:
            if not uow.directory.set_participant_status(participant_id, "active" if active else "suspended"):
                raise NotFoundError(f"no participant {participant_id!r}")
            _audit(
                uow,
                actor,
                "admin.activate" if active else "admin.suspend",
                participant_id,
                to_us(self.clock()),
            )
            uow.directory.bump_version()
            uow.commit()
        return self.provider.current().participants[participant_id]

    def rotate_key(
        self, participant_id: str, key_id: str, public_key_pem: str, actor: str = "cli"
    ) -> SigningKey:
        """Add a new signing key valid from now and retire the others at the same instant.

        Retired keys still verify what they signed before now; nothing signed
        with them after now is accepted. Raises NotFoundError, InvalidRequestError.
        """
        self._check_key(key_id, public_key_pem)
        now_us = to_us(self.clock())
        with self.store.unit_of_work(write=True) as uow:
            if uow.directory.participant(participant_id) is None:
                raise NotFoundError(f"no participant {participant_id!r}")
            if uow.directory.signing_key(participant_id, key_id) is not None:
                raise InvalidRequestError(
                    f"key {key_id!r} is already registered for {participant_id!r}", "key_id"
                )
            uow.directory.add_signing_key(
                participant_id=participant_id,
                key_id=key_id,
                public_key_pem=public_key_pem,
                not_before_us=now_us,
            )
            uow.directory.retire_signing_keys(participant_id, now_us, keep_key_id=key_id)
            _audit(uow, actor, "admin.rotate_key", participant_id, now_us, key_id)
            uow.directory.bump_version()
            uow.commit()
        key = self.provider.current().key(participant_id, key_id)
        assert key is not None
        return key

    def revoke_key(self, participant_id: str, key_id: str, actor: str = "cli") -> SigningKey:
        """Revoke a signing key from now on. Raises NotFoundError."""
        with self.store.unit_of_work(write=True) as uow:
            if not uow.directory.revoke_signing_key(participant_id, key_id, to_us(self.clock())):
                raise NotFoundError(f"no key {key_id!r} for participant {participant_id!r}")
            _audit(uow, actor, "admin.revoke_key", participant_id, to_us(self.clock()), key_id)
            uow.directory.bump_version()
            uow.commit()
        key = self.provider.current().key(participant_id, key_id)
        assert key is not None
        return key

    def revoke_certificate(self, sha256_hex: str, actor: str = "cli") -> datetime:
        """Revoke a client certificate (SHA-256 of its DER, hex) from now on. Returns when."""
        if not HEX64.fullmatch(sha256_hex):
            raise InvalidRequestError(
                "certificate_sha256 must be 64 lower-case hex digits", "certificate_sha256"
            )
        with self.store.unit_of_work(write=True) as uow:
            at = uow.directory.revoke_certificate(sha256_hex, to_us(self.clock()))
            _audit(uow, actor, "admin.revoke_certificate", "", to_us(self.clock()), sha256_hex)
            uow.directory.bump_version()
            uow.commit()
        return datetime.fromtimestamp(at / 1_000_000, UTC)

    def consume_token_id(self, jti: str, expires_at: datetime) -> bool:
        """Use a single-use token id. False if it was used before (a replay)."""
        with self.store.unit_of_work(write=True) as uow:
            fresh = uow.directory.use_token_id(jti, to_us(expires_at), to_us(self.clock()))
            uow.commit()
        return fresh

    def _check_key(self, key_id: str, public_key_pem: str) -> None:
        """Refuse a malformed key, and in production a development one. Raises InvalidRequestError."""
        if not KEY_ID.fullmatch(key_id):
            raise InvalidRequestError(f"key id must match {KEY_ID.pattern}", "key_id")
        try:
            key = signing.load_public_key(public_key_pem, key_id)
        except SignatureError as exc:
            raise InvalidRequestError(str(exc), "public_key_pem") from exc
        if not self.production:
            return
        same = [
            k
            for k in self.provider.current().keys.values()
            if k.development and k.public_key.public_numbers() == key.public_numbers()
        ]
        if same:
            raise InvalidRequestError(
                f"key {key_id!r} is the development key {same[0].participant_id}/{same[0].key_id}; "
                "refused in production (SPEHUB_ENV)",
                "public_key_pem",
            )


def _audit(
    uow: UnitOfWork, actor: str, action: str, participant_id: str, at_us: int, detail: str = ""
) -> None:
    """An administrative act in the audit log: the participant is the origin, the key or certificate the record."""
    uow.audit.append([AuditDraft(actor, action, participant_id, 0, detail, 0)], at_us)


def export_directory(
    directory: Directory, keys: HubKeyRing, now: datetime
) -> tuple[bytes, str, int, int, bytes]:
    """The directory as registry JSON, signed by the hub. Returns (json, key id, seconds, nanos, signature)."""
    body = json.dumps(directory.to_dict(), indent=2, ensure_ascii=False, sort_keys=True).encode()
    seconds, nanos = int(now.timestamp()), now.microsecond * 1000
    key = keys.signing
    message = signing.signing_input(EXPORT_TYPE, EXPORT_SIGNER, key.key_id, seconds, nanos, body)
    return body, key.key_id, seconds, nanos, signing.sign(key.private_key, message)
