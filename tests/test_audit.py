"""The audit log: appended with every act, hash-chained, checkpointed, and every form of tampering detected."""

from __future__ import annotations

import pytest
from spehub.v1 import pool_pb2
from sqlalchemy import delete, select, update

from hub.domain.records import PayloadKind
from hub.entrypoints.cli import main
from hub.store import schema as t
from tests.support.records import demo_consent, demo_offer, demo_profile

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
        return list(uow.audit.entries())


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
    _rewrite_from(logged, 2, drop_checkpoints=False)
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


def _rewrite_from(hub, seq: int, drop_checkpoints: bool = True) -> None:
    """The attack: change entry ``seq``, recompute the chain from there, and (unless told not to)
    delete the hub's checkpoints at and after it, so that the hub's own checks see nothing."""
    from hub.domain import audit as chain

    entries = _entries(hub)
    with hub.store.engine.begin() as conn:
        prev = chain.GENESIS
        for e in entries:
            draft = e.draft
            if e.seq == seq:
                draft = chain.AuditDraft(**{**draft.__dict__, "actor": "forged"})
            digest = chain.chain_hash(prev, e.seq, e.at_us, draft)
            conn.execute(
                update(t.audit_log)
                .where(a.seq == e.seq)
                .values(actor=draft.actor, prev_hash=prev, hash=digest)
            )
            prev = digest
        if drop_checkpoints:
            conn.execute(delete(t.audit_checkpoints).where(t.audit_checkpoints.c.seq >= seq))


class _AsJson:
    """An adapter writing the records a participant receives as JSON (the national format here)."""

    def write(self, record):
        from google.protobuf.json_format import MessageToDict

        return MessageToDict(record)


def _witness(hub, test_pki, tmp_path, pid=SN):
    """The participant's gateway receives its deliveries, checkpoints included; its witness file."""
    from hub.gateway import Inbox, Receiver, fetch_directory
    from tests.support.gateways import participant_channel

    inbox = Inbox(tmp_path / pid, _AsJson())
    with participant_channel(hub.port, test_pki, pid) as channel:
        report = Receiver(inbox, fetch_directory(channel), confirm_deletions=True).run(channel)
    inbox.close()
    return report, tmp_path / pid / "witness.jsonl"


def test_every_checkpoint_is_delivered_and_kept_by_the_gateways(logged, test_pki, tmp_path):
    from hub.services.audit import read_witness

    second = logged.audit.checkpoint()  # after p-late
    report, witness = _witness(logged, test_pki, tmp_path)
    kept = read_witness(witness)
    assert report.checkpoints == 2
    assert [w.checkpoint.seq for w in kept] == [cp.seq for cp in _checkpoints(logged)]
    assert kept[-1].checkpoint == second
    again, _ = _witness(logged, test_pki, tmp_path)  # acknowledged: nothing twice
    assert again.checkpoints == 0 and len(read_witness(witness)) == 2
    _, problems = logged.audit.verify(kept)
    assert problems == []


def test_a_checkpoint_delivered_twice_is_kept_once(tmp_path):
    from spehub.v1 import delivery_pb2

    from hub.gateway import Inbox

    inbox = Inbox(tmp_path / "inbox", object())
    cp = delivery_pb2.AuditCheckpoint(sequence=7, entry_hash=b"\x01" * 32, key_id="k", signature=b"s")
    assert inbox.keep_checkpoint(cp) and inbox.keep_checkpoint(cp)
    back = delivery_pb2.AuditCheckpoint(sequence=5, entry_hash=b"\x02" * 32, key_id="k", signature=b"s")
    assert not inbox.keep_checkpoint(back)  # the hub's head went back: kept, and said
    inbox.close()
    assert len((tmp_path / "inbox" / "witness.jsonl").read_text().splitlines()) == 2


def _checkpoints(hub):
    with hub.store.unit_of_work() as uow:
        return uow.audit.checkpoints()


def test_a_rewrite_before_a_witnessed_checkpoint_is_detected(logged, test_pki, tmp_path):
    """Without witnesses the hub cannot tell; with one participant's witness file it can, and it
    names the first witnessed sequence the log no longer matches."""
    from hub.services.audit import read_witness

    _, witness = _witness(logged, test_pki, tmp_path)
    (witnessed,) = read_witness(witness)
    _rewrite_from(logged, 3)
    assert logged.audit.checkpoint() is not None  # the hub signs the rewritten head...
    assert logged.audit.verify() == (len(_entries(logged)), [])  # ...and alone sees nothing
    _, problems = logged.audit.verify(read_witness(witness))
    seq = witnessed.checkpoint.seq
    assert any(f"entry {seq} has another hash" in p and f"at or before entry {seq}" in p for p in problems), (
        problems
    )
    assert any("no longer holds this checkpoint" in p for p in problems), problems


def test_audit_verify_command_with_witness_files(
    logged, test_pki, database_url, tmp_path, monkeypatch, capsys
):
    _, sn_witness = _witness(logged, test_pki, tmp_path, SN)
    _, ft_witness = _witness(logged, test_pki, tmp_path, FT)
    monkeypatch.setenv("SPEHUB_DATABASE_URL", database_url)
    monkeypatch.setenv("SPEHUB_TOKEN_KEYS", str(test_pki.root / "hub" / "token-keys"))
    monkeypatch.setenv("SPEHUB_TRUST_DOMAIN", "test.spehub.invalid")
    assert main(["audit", "verify", "--witness", str(sn_witness), str(ft_witness)]) == 0
    assert "and 2 witnessed checkpoint(s): intact" in capsys.readouterr().out
    _rewrite_from(logged, 2)
    assert main(["audit", "verify"]) == 0  # the hub alone is fooled
    capsys.readouterr()
    assert main(["audit", "verify", "--witness", str(sn_witness)]) == 1
    assert "TAMPERED: checkpoint at" in capsys.readouterr().out
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"sequence": 1}\n')
    assert main(["audit", "verify", "--witness", str(broken)]) == 2
    assert "broken.jsonl:1" in capsys.readouterr().err


def test_a_forged_witness_entry_is_reported_not_trusted(logged, test_pki, tmp_path):
    import json

    from hub.services.audit import read_witness

    _, witness = _witness(logged, test_pki, tmp_path)
    line = json.loads(witness.read_text().splitlines()[0])
    line["entry_hash"] = "00" * 32  # a participant cannot make the hub look guilty
    witness.write_text(json.dumps(line) + "\n")
    _, problems = logged.audit.verify(read_witness(witness))
    assert problems == [
        f"checkpoint at {line['sequence']} witnessed in witness.jsonl:1: signature does not verify with the hub's keys (not the hub's)"
    ]


def test_checkpoints_must_follow_one_another(logged):
    """Checkpoint continuity: a head that goes back (or a time that does) is reported."""
    logged.audit.checkpoint()
    first, second = _checkpoints(logged)
    _tamper(
        logged,
        update(t.audit_checkpoints)
        .where(t.audit_checkpoints.c.seq == second.seq)
        .values(at_us=first.at_us - 1),
    )
    _, problems = logged.audit.verify()
    assert any(
        f"checkpoint at {second.seq}: does not follow the checkpoint at {first.seq}" in p for p in problems
    )
