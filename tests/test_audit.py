"""The audit log: appended with every act, hash-chained, checkpointed, and every form of tampering detected."""

from __future__ import annotations

import pytest
from spehub.v1 import pool_pb2
from sqlalchemy import delete, select, update

from hub.domain.records import PayloadKind
from hub.entrypoints.cli import main
from hub.store import schema as t
from tests.records import demo_consent, demo_offer, demo_profile

SN, FT = "sn-anpej", "fr-francetravail"


@pytest.fixture
def logged(hub, connect):
    """A few acts of each kind, then a checkpoint; returns the hub."""
    sn, ft = connect(SN), connect(FT)
    now = sn.clock()
    sn.publish_one_batch(
        [
            sn.seal(demo_consent(SN, "c-1", 1, now, ("FR",)), PayloadKind.CONSENT),
            *(
                sn.seal(demo_profile(SN, f"p-{i}", "c-1", 1, now), PayloadKind.CANDIDATE_PROFILE)
                for i in range(3)
            ),
        ]
    )
    ft.publish_one_batch([ft.seal(demo_offer(FT, "o-1", 1, now), PayloadKind.JOB_OFFER)])
    ft.pool.SearchProfiles(pool_pb2.SearchProfilesRequest(), timeout=10)
    hub.admin.set_status("ml-anpe", False)
    assert hub.audit.checkpoint() is not None
    sn.publish_one_batch([sn.seal(demo_profile(SN, "p-late", "c-1", 1, now), PayloadKind.CANDIDATE_PROFILE)])
    return hub


def _entries(hub):
    with hub.store.unit_of_work() as uow:
        return list(uow.audit_entries())


def test_every_kind_of_act_is_logged_without_personal_data(logged):
    actions = [e.draft.action for e in _entries(logged)]
    assert actions.count("publish") == 5  # 4 profiles and the offer
    assert actions.count("disclose.search") == 3
    assert "consent.granted" in actions and "admin.suspend" in actions
    assert [e.seq for e in _entries(logged)] == list(range(1, len(actions) + 1))


def test_intact_log_verifies(logged):
    count, problems = logged.audit.verify()
    assert problems == [] and count == len(_entries(logged))


def _tamper(hub, statement):
    with hub.store.engine.begin() as conn:
        conn.execute(statement)


a = t.audit_log.c


@pytest.mark.parametrize(
    ("name", "make", "expected"),
    [
        ("edited", lambda: update(t.audit_log).where(a.seq == 3).values(actor="someone-else"), "edited"),
        ("deleted", lambda: delete(t.audit_log).where(a.seq == 4), "deleted"),
        ("truncated", lambda: delete(t.audit_log).where(a.seq >= 6), "truncated"),
    ],
)
def test_tampering_is_detected(logged, name, make, expected):
    _tamper(logged, make())
    _, problems = logged.audit.verify()
    assert problems and any(expected in p for p in problems), problems


def test_reordering_is_detected(logged):
    with logged.store.engine.begin() as conn:
        rows = {r.seq: r for r in conn.execute(select(t.audit_log).where(a.seq.in_((2, 3))))}
        for seq, other in ((2, 3), (3, 2)):
            r = rows[other]
            conn.execute(
                update(t.audit_log)
                .where(a.seq == seq)
                .values(
                    actor=r.actor, action=r.action, record_id=r.record_id, prev_hash=r.prev_hash, hash=r.hash
                )
            )
    _, problems = logged.audit.verify()
    assert any("entry 2" in p or "entry 3" in p for p in problems), problems


def test_a_rewritten_chain_is_caught_by_the_signed_checkpoint(logged):
    """Editing an entry and recomputing every hash after it still contradicts the checkpoint."""
    from hub.domain import audit as chain

    entries = _entries(logged)
    with logged.store.engine.begin() as conn:
        prev = chain.GENESIS
        for e in entries:
            draft = e.draft
            if e.seq == 2:
                draft = chain.AuditDraft(**{**draft.__dict__, "actor": "forged"})
            digest = chain.chain_hash(prev, e.seq, e.at_us, draft)
            conn.execute(
                update(t.audit_log)
                .where(a.seq == e.seq)
                .values(actor=draft.actor, prev_hash=prev, hash=digest)
            )
            prev = digest
    _, problems = logged.audit.verify()
    assert any("rewritten" in p for p in problems), problems


def test_forged_checkpoint_signature_is_detected(logged):
    _tamper(logged, update(t.audit_checkpoints).values(signature=b"\x30\x00"))
    _, problems = logged.audit.verify()
    assert any("signature" in p for p in problems)


def test_audit_commands(logged, test_pki, database_url, monkeypatch, capsys):
    monkeypatch.setenv("SPEHUB_DATABASE_URL", database_url)
    monkeypatch.setenv("SPEHUB_TOKEN_KEYS", str(test_pki.root / "hub" / "token-keys"))
    monkeypatch.setenv("SPEHUB_TRUST_DOMAIN", "test.spehub.invalid")
    assert main(["audit", "verify"]) == 0
    assert "intact" in capsys.readouterr().out
    assert main(["audit", "checkpoint"]) == 0
    assert main(["audit", "subject", SN, "c-1"]) == 0
    report = capsys.readouterr().out
    assert "disclose.search" in report and FT in report
    _tamper(logged, delete(t.audit_log).where(a.seq == 2))
    assert main(["audit", "verify"]) == 1
    assert "TAMPERED" in capsys.readouterr().out
