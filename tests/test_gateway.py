"""The SPE gateway: national file → signed envelopes → durable outbox → hub, exactly once over a flaky link."""

from __future__ import annotations

import base64
import socket
from pathlib import Path

from prometheus_client import CollectorRegistry

from adapters.france_travail import FranceTravailOffers
from adapters.tabular import TabularAdapter
from hub.api.client import authorized_channel
from hub.bootstrap import build_hub
from hub.entrypoints.cli import main
from hub.entrypoints.gateway import Gateway, Outbox, converted_records
from tests.conftest import hub_settings

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT.parent / "shared" / "samples"
FT = "fr-francetravail"


def _gateway(test_pki, pid, tmp_path) -> Gateway:
    folder = test_pki.participant_dir(pid)
    return Gateway(
        pid,
        (folder / "key-id").read_text().strip(),
        (folder / "signing-key.pem").read_bytes(),
        Outbox(tmp_path / "outbox.sqlite3"),
    )


def _channel(port, test_pki, pid):
    folder = test_pki.participant_dir(pid)
    return authorized_channel(
        f"127.0.0.1:{port}",
        test_pki.ca_pem,
        (folder / "client.pem").read_bytes(),
        (folder / "client-key.pem").read_bytes(),
    )


def _stored(hub) -> int:
    with hub.store.unit_of_work() as uow:
        return uow.count_envelopes()


def _offers(codelists):
    adapter = FranceTravailOffers(codelists, FT, ("SN",))
    report: list[str] = []
    records = []
    for name in (
        "ft_offer_167ZKWX_2024",
        "ft_search_response_doc_example_048KLTP",
        "ft_offers_4369834_4162319_pass-emploi-mock",
    ):
        records += list(converted_records(adapter.read(SAMPLES / "france_travail" / f"{name}.json"), report))
    return records, report


def test_send_then_resend_stores_each_record_once(hub, test_pki, codelists, tmp_path):
    records, report = _offers(codelists)
    assert len(records) == 2 and any("I1401" in line for line in report)
    gateway = _gateway(test_pki, FT, tmp_path)
    assert gateway.queue(records, progress=False) == 2
    assert gateway.queue(records, progress=False) == 0  # the same records again: nothing new queued
    with _channel(hub.port, test_pki, FT) as channel:
        first = gateway.flush(channel)
        again = gateway.flush(channel)
    assert (first.accepted, first.pending, first.link_error) == (2, 0, "")
    assert again.sent == 0
    assert _stored(hub) == 2


def test_link_down_keeps_everything_then_delivers_exactly_once(
    test_pki, database_url, clock, codelists, tmp_path
):
    records, _ = _offers(codelists)
    gateway = _gateway(test_pki, FT, tmp_path)
    gateway.queue(records, progress=False)
    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    with _channel(dead, test_pki, FT) as channel:
        down = gateway.flush(channel, timeout=2)
    assert down.link_error == "UNAVAILABLE" and down.pending == 2 and down.sent == 0

    hub = build_hub(hub_settings(test_pki, database_url), clock=clock, metrics_registry=CollectorRegistry())
    try:
        with _channel(hub.port, test_pki, FT) as channel:
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


def test_tabular_export_through_the_gateway(hub, test_pki, codelists, tmp_path):
    adapter = TabularAdapter(codelists, ROOT / "adapters" / "mappings" / "sn-anpej.toml", b"k" * 32)
    report: list[str] = []
    gateway = _gateway(test_pki, "sn-anpej", tmp_path)
    gateway.queue(
        converted_records(adapter.read(ROOT / "tests" / "fixtures" / "tabular" / "senegal.csv"), report),
        progress=False,
    )
    with _channel(hub.port, test_pki, "sn-anpej") as channel:
        result = gateway.flush(channel)
    assert (result.accepted, result.rejected) == (4, 0)  # two rows: a profile and personal details each
    assert len(report) == 4  # the four bad rows, reported


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
