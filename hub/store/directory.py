"""The directory: participants, signing keys, revoked certificates, single-use token ids."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    delete,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from hub.domain.directory import Participant, ParticipantKind
from hub.domain.stored import (
    StoredKey,
)
from hub.store import schema as t
from hub.store.sql import (
    Repository,
)


class DirectoryRepository(Repository):
    """The directory: participants, signing keys, revoked certificates, single-use token ids."""

    def version(self) -> int:
        """The directory's change counter (0 before the first change)."""
        value = self.conn.execute(
            select(t.directory_state.c.version).where(t.directory_state.c.id == 1)
        ).scalar()
        return int(value or 0)

    def bump_version(self) -> int:
        """Record that the directory changed. Returns the new version."""
        state = t.directory_state.c
        if not self.conn.execute(
            update(t.directory_state).where(state.id == 1).values(version=state.version + 1)
        ).rowcount:
            self.conn.execute(insert(t.directory_state).values(id=1, version=1))
        return self.version()

    def contents(self) -> tuple[list[Participant], list[StoredKey], set[str]]:
        """Every participant, every signing key, and the revoked certificate hashes."""
        participants = [
            _participant(row)
            for row in self.conn.execute(select(t.participants).order_by(t.participants.c.id))
        ]
        keys = [
            StoredKey(*row)
            for row in self.conn.execute(
                select(t.signing_keys).order_by(
                    t.signing_keys.c.participant_id, t.signing_keys.c.not_before_us
                )
            )
        ]
        revoked = set(self.conn.execute(select(t.revoked_certificates.c.sha256)).scalars())
        return participants, keys, revoked

    def participant(self, participant_id: str) -> Participant | None:
        row = self.conn.execute(select(t.participants).where(t.participants.c.id == participant_id)).first()
        return _participant(row) if row is not None else None

    def add_participant(self, **values: Any) -> None:
        self.conn.execute(insert(t.participants).values(**values))

    def set_participant_status(self, participant_id: str, status: str) -> bool:
        """True if the participant exists."""
        p = t.participants.c
        return bool(
            self.conn.execute(
                update(t.participants).where(p.id == participant_id).values(status=status)
            ).rowcount
        )

    def signing_key(self, participant_id: str, key_id: str) -> StoredKey | None:
        k = t.signing_keys.c
        row = self.conn.execute(
            select(t.signing_keys).where(k.participant_id == participant_id, k.key_id == key_id)
        ).first()
        return StoredKey(*row) if row is not None else None

    def add_signing_key(self, **values: Any) -> None:
        self.conn.execute(insert(t.signing_keys).values(**values))

    def retire_signing_keys(self, participant_id: str, at_us: int, keep_key_id: str) -> int:
        """Set not_after on the participant's open keys except ``keep_key_id``. Returns how many."""
        k = t.signing_keys.c
        return self.conn.execute(
            update(t.signing_keys)
            .where(k.participant_id == participant_id, k.key_id != keep_key_id, k.not_after_us.is_(None))
            .values(not_after_us=at_us)
        ).rowcount

    def revoke_signing_key(self, participant_id: str, key_id: str, at_us: int) -> bool:
        """Revoke (first revocation time wins). True if the key exists."""
        k = t.signing_keys.c
        where = (k.participant_id == participant_id, k.key_id == key_id)
        if self.signing_key(participant_id, key_id) is None:
            return False
        self.conn.execute(
            update(t.signing_keys).where(*where, k.revoked_at_us.is_(None)).values(revoked_at_us=at_us)
        )
        return True

    def revoke_certificate(self, sha256_hex: str, at_us: int) -> int:
        """Revoke a certificate by hash (first revocation time wins). Returns the revocation time."""
        c = t.revoked_certificates.c
        existing = self.conn.execute(select(c.revoked_at_us).where(c.sha256 == sha256_hex)).scalar()
        if existing is not None:
            return int(existing)
        self.conn.execute(insert(t.revoked_certificates).values(sha256=sha256_hex, revoked_at_us=at_us))
        return at_us

    def use_token_id(self, jti: str, expires_at_us: int, now_us: int) -> bool:
        """Mark a single-use token id as used. False if it was used before."""
        u = t.used_token_ids.c
        self.conn.execute(delete(t.used_token_ids).where(u.expires_at_us < now_us))
        try:
            # A savepoint, so that a concurrent use (primary-key conflict) does
            # not abort the surrounding transaction on PostgreSQL.
            with self.conn.begin_nested():
                self.conn.execute(insert(t.used_token_ids).values(jti=jti, expires_at_us=expires_at_us))
        except IntegrityError:
            return False
        return True


def _participant(row: Any) -> Participant:
    return Participant(
        row.id, row.country_code, ParticipantKind(row.kind), row.display_name, row.status == "active"
    )
