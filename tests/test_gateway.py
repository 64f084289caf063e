"""The SPE gateway: national file → signed envelopes → durable outbox → hub, exactly once over a flaky link."""

from __future__ import annotations

import base64
import csv
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from spehub.v1 import consent_pb2, delivery_pb2, delivery_pb2_grpc, envelope_pb2, exchange_pb2, profile_pb2

from adapters.base import load
from adapters.france_travail import FranceTravailOffers
from adapters.tabular import TabularAdapter
from hub.bootstrap import build_hub, overdue_deletions
from hub.domain.records import PayloadKind
from hub.entrypoints.cli import main
from hub.gateway import (
    GatewayError,
    Inbox,
    Outbox,
    Receiver,
    ReceiveReport,
    ReviewQueue,
    Sender,
    converted_records,
    fetch_directory,
)
from hub.gateway.receiver import _receive_record
from tests.support.gateways import SN, participant_channel, sn_inbox, tabular_send
from tests.support.hubs import hub_settings

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT.parent / "shared" / "samples"
FT = "fr-francetravail"


def _gateway(test_pki, pid, tmp_path) -> Sender:
    folder = test_pki.participant_dir(pid)
    return Sender(
        pid,
        (folder / "key-id").read_text().strip(),
        (folder / "signing-key.pem").read_bytes(),
        Outbox(tmp_path / "outbox.sqlite3"),
    )


def _stored(hub) -> int:
    with hub.store.unit_of_work() as uow:
        return uow.records.count_envelopes()


def _offers(codelists):
    adapter = FranceTravailOffers(codelists, FT, ("SN",))
    report: list[str] = []
    records = []
    for name in ("ft_offer_167ZKWX_2024", "ft_search_response_doc_example_048KLTP"):
        records += list(converted_records(adapter.read(SAMPLES / "france_travail" / f"{name}.json"), report))
    return records, report


@pytest.mark.needs_samples
def test_send_then_resend_stores_each_record_once(hub, test_pki, codelists, tmp_path):
    records, _report = _offers(codelists)
    assert len(records) == 2
    gateway = _gateway(test_pki, FT, tmp_path)
    assert gateway.queue(records, progress=False) == 2
    assert gateway.queue(records, progress=False) == 0  # the same records again: nothing new queued
    with participant_channel(hub.port, test_pki, FT) as channel:
        first = gateway.flush(channel)
        again = gateway.flush(channel)
    assert (first.accepted, first.pending, first.link_error) == (2, 0, "")
    assert again.sent == 0
    assert _stored(hub) == 2


@pytest.mark.needs_samples
def test_link_down_keeps_everything_then_delivers_exactly_once(
    test_pki, database_url, clock, codelists, tmp_path
):
    records, _ = _offers(codelists)
    gateway = _gateway(test_pki, FT, tmp_path)
    gateway.queue(records, progress=False)
    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    with participant_channel(dead, test_pki, FT) as channel:
        down = gateway.flush(channel, timeout=2)
    assert down.link_error == "UNAVAILABLE" and down.pending == 2 and down.sent == 0

    hub = build_hub(hub_settings(test_pki, database_url), clock=clock, metrics_registry=CollectorRegistry())
    try:
        with participant_channel(hub.port, test_pki, FT) as channel:
            up = gateway.flush(channel)
            assert (up.accepted, up.pending) == (2, 0)
            # A crash after the hub answered but before the outbox recorded it: both come back pending…
            gateway.outbox.db.execute("UPDATE outbox SET state = 'pending'")
            gateway.outbox.db.commit()
            retried = gateway.flush(channel)
        # …and are sent again with the same bytes: the hub says DUPLICATE and stores nothing twice.
        assert (retried.duplicate, retried.accepted) == (2, 0)
        assert _stored(hub) == 2
    finally:
        hub.stop(0)


# A [consent] section for a template mapping whose export gains two columns.
CONSENT = """
[consent]
date = "date_consentement"
form_version = "formulaire"

[consent.forms."2026"]
purposes = ["POOL_SEARCH", "MATCHING"]
recipients = ["FR"]
transfer_basis = "AUTHORITY_AGREEMENT"
basis_reference = "test agreement"
notice_sha256 = "1eb9e50db3415b98feb24a7c0ef21f04d8222e58d52c0f6b6007de8170190123"
"""


def test_an_export_without_consent_publishes_nothing(hub, test_pki, codelists, tmp_path):
    """The template mapping has no [consent]: every row is converted but kept at the SPE, reported."""
    adapter = TabularAdapter(codelists, ROOT / "adapters" / "mappings" / "sn-anpej.toml", b"k" * 32)
    report: list[str] = []
    gateway = _gateway(test_pki, "sn-anpej", tmp_path)
    gateway.queue(
        converted_records(adapter.read(ROOT / "tests" / "fixtures" / "tabular" / "senegal.csv"), report),
        progress=False,
    )
    with participant_channel(hub.port, test_pki, "sn-anpej") as channel:
        result = gateway.flush(channel)
    assert (result.sent, result.accepted, result.rejected) == (0, 0, 0)
    assert _stored(hub) == 0
    assert sum("kept at the SPE, not published [local]" in line for line in report) == 4  # once a row
    assert sum(line.endswith("[error]") for line in report) == 2  # two rows refused, one error each


@pytest.mark.needs_samples
def test_gateway_command(hub, test_pki, codelists, tmp_path, capsys):
    codelists.save(tmp_path / "codelists")
    key = tmp_path / "subject.key"
    key.write_text(base64.b64encode(b"s" * 32).decode())
    common = [
        "gateway",
        "send",
        "--participant",
        FT,
        "--pki",
        str(test_pki.root),
        "--hub",
        f"127.0.0.1:{hub.port}",
        "--outbox",
        str(tmp_path / "ob.sqlite3"),
        "--codelists",
        str(tmp_path / "codelists"),
        "--offer-target",
        "SN",
    ]
    sample = str(SAMPLES / "france_travail" / "ft_offer_167ZKWX_2024.json")
    assert main([*common[:2], "france-travail-offers", sample, *common[2:]]) == 0
    out = capsys.readouterr().out
    assert "1 new record(s) signed and queued" in out and "1 accepted" in out
    assert main([*common[:2], "france-travail-offers", sample, *common[2:]]) == 0
    assert "0 new record(s)" in capsys.readouterr().out


# -- the receiving side ------------------------------------------------------------------------


def _publish_offers(hub, test_pki, codelists, tmp_path):
    records, _ = _offers(codelists)
    gateway = _gateway(test_pki, FT, tmp_path)
    gateway.queue(records, progress=False)
    with participant_channel(hub.port, test_pki, FT) as channel:
        assert gateway.flush(channel).accepted == 2
    return records


@pytest.mark.needs_samples
def test_receive_writes_offers_in_the_national_format_exactly_once(hub, test_pki, codelists, tmp_path):
    offers = _publish_offers(hub, test_pki, codelists, tmp_path)

    class CrashingInbox(Inbox):
        """The gateway dies after writing the first file, before acknowledging anything."""

        def write_record(self, *args):
            if list((self.folder / "records").rglob("*.csv")):
                raise RuntimeError("power cut")
            return super().write_record(*args)

    with participant_channel(hub.port, test_pki, SN) as channel:
        directory = fetch_directory(channel)
        crashing = sn_inbox(codelists, tmp_path, CrashingInbox)
        with pytest.raises(RuntimeError):
            Receiver(crashing, directory).run(channel)
        crashing.close()
        inbox = sn_inbox(codelists, tmp_path)
        report = Receiver(inbox, directory).run(channel)
        again = Receiver(inbox, directory).run(channel)
    assert (report.written, report.refused, report.link_error) == (2, 0, "")
    assert again.written == 0  # acknowledged: nothing comes twice
    files = sorted((tmp_path / "inbox" / "records" / FT).glob("*.csv"))
    assert [f.name for f in files] == sorted(f"{o.header.record_id}.v{o.header.version}.csv" for o in offers)
    # ANPEJ's own import columns, separator and date format, with the French ISCO-08 (CITP-08) label.
    with files[0].open(encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter=";"))
    assert len(rows) == 1 and set(rows[0]) >= {"reference_offre", "code_citp", "libelle_citp", "employeur"}
    by_id = {o.header.record_id: o for o in offers}
    offer = by_id[rows[0]["reference_offre"]]
    assert rows[0]["code_citp"] == offer.occupation.isco08_code
    assert rows[0]["libelle_citp"] == codelists.isco_units[offer.occupation.isco08_code]["fr"]
    assert rows[0]["service_emetteur"] == FT


@pytest.mark.needs_samples
def test_receive_removes_withdrawn_offers_and_lists_the_notice(hub, test_pki, codelists, tmp_path, connect):
    offers = _publish_offers(hub, test_pki, codelists, tmp_path)
    inbox = sn_inbox(codelists, tmp_path)
    with participant_channel(hub.port, test_pki, SN) as channel:
        directory = fetch_directory(channel)
        Receiver(inbox, directory).run(channel)
        withdrawn = offers[0].header.record_id
        connect(FT).exchange.WithdrawRecord(
            exchange_pb2.WithdrawRecordRequest(
                payload_type=envelope_pb2.PAYLOAD_TYPE_JOB_OFFER, record_id=withdrawn
            ),
            timeout=10,
        )
        report = Receiver(inbox, directory).run(channel)
    assert report.withdrawn == 1
    assert [f.name.split(".v")[0] for f in (tmp_path / "inbox" / "records" / FT).glob("*.csv")] == [
        offers[1].header.record_id
    ]
    with (tmp_path / "inbox" / "notices.csv").open(encoding="utf-8", newline="") as handle:
        (notice,) = list(csv.DictReader(handle))
    assert (notice["kind"], notice["origin"], notice["record_id"]) == ("withdrawal", FT, withdrawn)


@pytest.mark.needs_samples
def test_a_record_whose_signature_fails_is_refused_not_written(hub, test_pki, codelists, tmp_path):
    """End to end: the receiving SPE checks the origin's signature itself; the hub cannot forge a record."""
    _publish_offers(hub, test_pki, codelists, tmp_path)
    with participant_channel(hub.port, test_pki, SN) as channel:
        directory = fetch_directory(channel)
        stub = delivery_pb2_grpc.DeliveryServiceStub(channel)
        (first, *_) = [
            r.delivery for r in stub.Subscribe(delivery_pb2.SubscribeRequest(stop_when_drained=True))
        ]
    forged = delivery_pb2.Delivery()
    forged.CopyFrom(first)
    forged.envelope.payload = forged.envelope.payload.replace(b"FT-", b"FX-", 1)  # altered after signing
    inbox = sn_inbox(codelists, tmp_path)
    report = ReceiveReport()
    _receive_record(forged, inbox, directory, report)
    assert report.refused == 1 and report.written == 0
    assert not list((tmp_path / "inbox" / "records").rglob("*.csv"))
    notices = (tmp_path / "inbox" / "notices.csv").read_text(encoding="utf-8")
    assert "refused" in notices and "signature" in notices.lower()


def test_a_deletion_notice_holds_the_cursor_until_the_spe_confirms(
    hub, connect, clock, test_pki, codelists, tmp_path
):
    from tests.support.consents import consent_for, found, publish_candidate

    sn, ft = connect(SN), connect(FT)
    publish_candidate(sn, consent_for(SN, sn.clock()))
    assert found(ft) == 1  # France Travail saw the candidate
    erase = consent_for(
        SN, sn.clock(), version=2, status=consent_pb2.CONSENT_STATUS_WITHDRAWN, erasure_requested=True
    )
    sn.publish_one_batch([sn.seal(erase, PayloadKind.CONSENT)])
    adapter = load("eures-hropen", codelists=codelists, origin_participant_id=FT)
    inbox = Inbox(tmp_path / "ft-inbox", adapter)
    with participant_channel(hub.port, test_pki, FT) as channel:
        directory = fetch_directory(channel)
        held = Receiver(inbox, directory).run(channel)
        assert held.held_deletion and held.erased == 0
        # Unconfirmed, the notice stays unacknowledged: it would turn overdue for the operator.
        assert overdue_deletions(hub.store, lambda: clock() + timedelta(days=4), timedelta(hours=72)) == {
            FT: 1
        }
        again = Receiver(inbox, directory).run(channel)  # it stays first in line
        assert again.held_deletion == held.held_deletion
        confirmed = Receiver(inbox, directory, confirm_deletions=held.held_deletion).run(channel)
    assert confirmed.erased == 1 and confirmed.acknowledged >= held.held_deletion
    assert overdue_deletions(hub.store, lambda: clock() + timedelta(days=4), timedelta(hours=72)) == {}
    notices = (tmp_path / "ft-inbox" / "notices.csv").read_text(encoding="utf-8")
    assert notices.count("deletion") == 3 and "confirm this sequence" in notices


@pytest.mark.needs_samples
def test_gateway_receive_command(hub, test_pki, codelists, tmp_path, capsys):
    _publish_offers(hub, test_pki, codelists, tmp_path)
    codelists.save(tmp_path / "codelists")
    args = [
        "gateway",
        "receive",
        "tabular",
        "--participant",
        SN,
        "--out",
        str(tmp_path / "in"),
        "--pki",
        str(test_pki.root),
        "--hub",
        f"127.0.0.1:{hub.port}",
        "--codelists",
        str(tmp_path / "codelists"),
        "--mapping",
        str(ROOT / "adapters" / "mappings" / "sn-anpej.toml"),
    ]
    assert main(args) == 0
    assert "2 record(s) written" in capsys.readouterr().out
    assert main(args) == 0
    assert "0 record(s) written" in capsys.readouterr().out


def test_the_directory_export_is_checked_with_the_hubs_public_key(hub, test_pki, tmp_path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from hub.domain.signing import load_private_key

    (token_key,) = (test_pki.root / "hub" / "token-keys").glob("*.pem")
    public = load_private_key(token_key.read_bytes(), "hub").public_key()
    pem = public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    other = ec.generate_private_key(ec.SECP256R1()).public_key()
    wrong = other.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    with participant_channel(hub.port, test_pki, SN) as channel:
        assert SN in fetch_directory(channel, pem).participants
        with pytest.raises(GatewayError, match="does not verify"):
            fetch_directory(channel, wrong)


def test_a_link_dropping_mid_file_loses_nothing_and_doubles_nothing(hub, test_pki, tmp_path):
    """The hub link goes down after three of ten batches; the next run sends the rest, each record once."""
    from hub import synth
    from tests.support.processes import TcpProxy

    offers = []
    for i, offer in enumerate(synth.offers(4, 200, synth.now_utc())):
        offer.header.origin_participant_id = FT
        offer.header.record_id = f"FT-load-{i}"
        offer.place.country_code = offer.employer.country_code = "FR"
        offers.append(offer)
    gateway = _gateway(test_pki, FT, tmp_path)
    assert gateway.queue(offers, progress=False) == 200
    proxy = TcpProxy(hub.port)
    marks = {"n": 0}
    original = gateway.outbox.mark

    def mark_then_cut(results):  # the link drops right after the third batch is answered
        original(results)
        marks["n"] += 1
        if marks["n"] == 3:
            proxy.cut()

    gateway.outbox.mark = mark_then_cut
    try:
        with participant_channel(proxy.port, test_pki, FT) as channel:
            first = gateway.flush(channel, batch=20, timeout=5)
        assert first.link_error and first.accepted == 60 and first.pending == 140
        proxy.restore()
        with participant_channel(proxy.port, test_pki, FT) as channel:
            second = gateway.flush(channel, batch=20)
        assert (second.accepted, second.duplicate, second.pending, second.link_error) == (140, 0, 0, "")
        assert _stored(hub) == 200
    finally:
        proxy.close()


def test_a_held_record_waits_for_review_then_the_alias_publishes_it_and_wins_next_time(
    hub, test_pki, tmp_path, capsys
):
    """Abstained: held, not refused and not published; the SPE picks a suggestion (or gives a code),
    which becomes its alias; the records go out; the same title is resolved by the alias next time;
    the aliases export and import into another gateway."""
    text = (ROOT / "tests" / "fixtures" / "tabular" / "tn-aneti.csv").read_text(encoding="utf-8")
    good_row = text.splitlines()[1].replace(",maçon,", ",Bâtisseur de rêves,")
    export = tmp_path / "tn.csv"
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    export.write_text(
        text.splitlines()[0] + ",date_consentement,formulaire\n" + good_row + f",{today},2026\n",
        encoding="utf-8",
    )
    mapping = tmp_path / "tn-aneti.toml"
    mapping.write_text(
        (ROOT / "adapters" / "mappings" / "tn-aneti.toml").read_text(encoding="utf-8") + CONSENT,
        encoding="utf-8",
    )
    where = ["--participant", "tn-aneti", "--outbox", str(tmp_path / "ob.sqlite3")]
    send = tabular_send(export, "tn-aneti", tmp_path / "ob.sqlite3", mapping, hub.port, test_pki, b"s" * 32)
    # tn-aneti is suspended in the test PKI: the link refuses it, which does not matter here.
    main(send)
    out = capsys.readouterr().out
    assert "0 new record(s) signed and queued; 1 held for review" in out, out
    assert _stored(hub) == 0
    assert main(["gateway", "review", *where]) == 0
    listing = capsys.readouterr().out
    assert "#1 " in listing and "'Bâtisseur de rêves'" in listing and "    1. " in listing
    assert "بن سالم" not in listing and "أميرة" not in listing  # no personal data shown
    assert (
        main(["gateway", "review", *where, "--accept", "1", "--code", "7112", "--pki", str(test_pki.root)])
        == 0
    )
    decided = capsys.readouterr().out
    assert (
        "'Bâtisseur de rêves' is 7112 from now on" in decided and "3 record(s) signed and queued" in decided
    )
    outbox = Outbox(tmp_path / "ob.sqlite3")
    queued = [
        profile_pb2.CandidateProfile.FromString(envelope_pb2.SignedEnvelope.FromString(blob).payload)
        for _, blob in outbox.pending(10)
        if envelope_pb2.SignedEnvelope.FromString(blob).payload_type
        == envelope_pb2.PAYLOAD_TYPE_CANDIDATE_PROFILE
    ]
    assert [(p.occupations[0].isco08_code, p.occupations[0].resolution.method) for p in queued] == [
        ("7112", "alias")
    ]
    assert ReviewQueue(outbox).held() == []
    outbox.close()
    # Next time the same title is the alias's, without review.
    again = tmp_path / "tn2.csv"
    again.write_text(
        export.read_text(encoding="utf-8").replace("TN-09-88123", "TN-09-99999"), encoding="utf-8"
    )
    main([*send[:3], str(again), *send[4:]])
    assert "3 new record(s) signed and queued" in capsys.readouterr().out
    # Shared with another SPE.
    shared = tmp_path / "aliases.json"
    assert main(["gateway", "aliases", "export", str(shared), *where]) == 0
    other = ["--participant", "ma-anapec", "--outbox", str(tmp_path / "other.sqlite3")]
    assert main(["gateway", "aliases", "import", str(shared), *other]) == 0
    assert "1 alias(es) added" in capsys.readouterr().out.splitlines()[-1]
    (tmp_path / "junk.json").write_text('{"format": 9}')
    assert main(["gateway", "aliases", "import", str(tmp_path / "junk.json"), *other]) == 2


def test_an_imported_alias_with_a_code_in_other_digits_is_skipped(tmp_path):
    """str.isdigit took "٩٢١١" for an ISCO-08 code (issue 25, item 5): such an alias is not imported."""
    outbox = Outbox(tmp_path / "ob.sqlite3")
    queue = ReviewQueue(outbox)
    aliases = {
        "fr:ouvrier agricole": {"isco08": "9211", "title": "ouvrier agricole"},
        "fr:maraicher": {"isco08": "٩٢١١", "title": "maraîcher"},
        "fr:berger": {"isco08": "６１２１", "title": "berger"},
    }
    assert queue.import_aliases({"format": 1, "aliases": aliases}) == 1
    assert [a["isco08"] for a in queue.aliases().values()] == ["9211"]
    outbox.close()


def test_an_envelope_queued_with_a_high_s_signature_is_sent_in_its_low_s_form(hub, test_pki, tmp_path):
    """Signatures queued in an outbox before the hub refused high S (issue 25, item 7) are not lost
    on the upgrade: the gateway sends each as its low-S twin, the same signature of the same bytes."""
    import sqlite3

    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

    from hub.domain import signing
    from tests.support.records import demo_offer

    order = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551  # P-256's n
    gateway = _gateway(test_pki, FT, tmp_path)
    now = datetime.now(UTC)
    assert (
        gateway.queue([demo_offer(FT, f"o-{i}", 1, now, targets=("SN",)) for i in range(3)], progress=False)
        == 3
    )
    with sqlite3.connect(tmp_path / "outbox.sqlite3") as db:  # as an older gateway left them
        for seq, blob in db.execute("SELECT seq, envelope FROM outbox").fetchall():
            env = envelope_pb2.SignedEnvelope.FromString(blob)
            r, s = decode_dss_signature(env.signature)
            env.signature = encode_dss_signature(r, order - s)
            assert signing.high_s(env.signature)
            db.execute("UPDATE outbox SET envelope = ? WHERE seq = ?", (env.SerializeToString(), seq))
    with participant_channel(hub.port, test_pki, FT) as channel:
        result = gateway.flush(channel)
    assert (result.accepted, result.rejected) == (3, 0)
    with hub.store.unit_of_work() as uow:
        assert uow.records.count_envelopes() == 3
