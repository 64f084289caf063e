"""Crafted exports (issue 25, item 1): every adapter reader refuses a hostile file with one line
naming the record and the limit (adapters/limits.py, docs/limits.md), and no file crashes it or
makes it take unbounded memory.

Each adapter reads its hostile files as ``spe-hub adapter check`` in a process of its own under a
1 GB address-space cap. Before the guards, one integer of 4,400 digits killed the process with
signal 11 (ijson 3.6's C backend), 400 KB of brackets grew it to 23 GB, a 1,000-deep object
raised RecursionError and a 4,400-digit HR-XML quantity a ValueError traceback. The guards
themselves are then tested in process.
"""

from __future__ import annotations

import io
import json
import resource
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import ijson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.base import load
from adapters.limits import (
    ELEMENT_CHARS,
    MAX_DEPTH,
    MAX_NUMBER_CHARS,
    MAX_RECORD_BYTES,
    MAX_STRING_BYTES,
    READ_BYTES,
    JsonGuard,
    LimitExceeded,
    dropped_values,
    xml_documents,
)

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
MEMORY_CAP = 1 << 30  # RLIMIT_AS of each reader process: 1 GB
DEADLINE_S = 240  # generous: a reader takes a few seconds on a busy machine
BRACKETS = 200_000  # the attack's 400 KB file: "[" * 200,000 + "]" * 200,000
DIGITS = 4_400  # the attack's integer
HR = "http://www.hr-xml.org/3"
EUROPASS_V4 = "http://www.europass.eu/1.0"
FILLER = b"x"  # what fills the long values: the output must never echo a run of it
CELL_OF_TWO_LINES = b'"q\nq";'


def _json_cases(wrap: Callable[[bytes], bytes]) -> dict[str, tuple[bytes, str | None]]:
    """File name → (its bytes, what its refusal line says; None: only that its row is refused).
    ``wrap`` puts one record where the adapter reads records."""

    def record(value: bytes) -> bytes:
        return wrap(b'{"id": "A1", "x": ' + value + b"}")

    return {
        "brackets.json": (b"[" * BRACKETS + b"]" * BRACKETS, "limit MAX_DEPTH"),
        # The UTF-8 byte order mark is skipped, and the limits still hold after it.
        "bom-brackets.json": (b"\xef\xbb\xbf" + b"[" * BRACKETS + b"]" * BRACKETS, "limit MAX_DEPTH"),
        "deep-record.json": (record(b'{"a": ' * 1_000 + b"1" + b"}" * 1_000), "limit MAX_DEPTH"),
        "long-number.json": (record(b"1" + b"0" * DIGITS), "limit MAX_NUMBER_CHARS"),
        "long-string.json": (
            record(b'"' + FILLER * (MAX_STRING_BYTES + 1) + b'"'),
            "limit MAX_STRING_BYTES",
        ),
        "large-record.json": (
            record(b"[" + b'"abcdefghijklm",' * (MAX_RECORD_BYTES // 16 + 1) + b'"z"]'),
            "limit MAX_RECORD_BYTES",
        ),
        "not-utf8.json": (record(b'"\xff\xfe"'), "bytes that are not UTF-8"),
        "nan.json": (record(b"NaN"), "NaN and Infinity are not JSON values"),
        "infinity.json": (record(b"-Infinity"), "NaN and Infinity are not JSON values"),
        "utf16.json": (json.dumps({"id": "A1"}).encode("utf-16"), "read as UTF-8"),
        "truncated.json": (record(b'"abc"')[:-3], "cut short"),
        # The last of duplicate keys wins (docs/limits.md): here an object where an id belongs.
        "duplicate-keys.json": (wrap(b'{"id": "A1", "id": {"a": 1}}'), None),
    }


def _xml_cases(document: str, namespace: str) -> dict[str, tuple[bytes, str | None]]:
    start, end = f'<{document} xmlns="{namespace}">'.encode(), f"</{document}>".encode()
    return {
        "deep.xml": (b"<a>" * BRACKETS + b"</a>" * BRACKETS, "limit MAX_DEPTH"),
        "long-text.xml": (
            start + b"<DocumentID>" + FILLER * (MAX_STRING_BYTES + 1) + b"</DocumentID>" + end,
            "limit MAX_STRING_BYTES",
        ),
        "long-attribute.xml": (
            start[:-1] + b' validFrom="' + FILLER * (MAX_STRING_BYTES + 1) + b'">' + end,
            "limit MAX_STRING_BYTES",
        ),
        "large-record.xml": (
            start + (b"<Note>" + b"n" * 1_000 + b"</Note>") * (MAX_RECORD_BYTES // 1_000 + 1) + end,
            "limit MAX_RECORD_BYTES",
        ),
        "entities.xml": (
            b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY b "bbbbbbbb"><!ENTITY c "&b;&b;&b;&b;">]><a>&c;</a>',
            "EntitiesForbidden",
        ),
        "not-utf8.xml": (start + b"<DocumentID>\xff\xfe</DocumentID>" + end, "not well-formed"),
        "truncated.xml": (start + b"<DocumentID>A1</Docu", "cut short"),
    }


def _hrxml_cases() -> dict[str, tuple[bytes, str | None]]:
    vacancy = (FIXTURES / "hrxml" / "vacancy_seasonal_es.xml").read_bytes()
    quantity = b"<PositionOpenQuantity>40</PositionOpenQuantity>"
    assert quantity in vacancy
    many = quantity.replace(b"40", b"1" + b"0" * DIGITS)
    return {
        **_xml_cases("PositionOpening", HR),
        "long-quantity.xml": (vacancy.replace(quantity, many), "PositionOpenQuantity: not a positive"),
    }


def _csv_cases() -> dict[str, tuple[bytes, str | None]]:
    export = (FIXTURES / "exports" / "sn-anpej-2026.csv").read_bytes()
    header = export.split(b"\n", 1)[0] + b"\n"
    return {
        "long-cell.csv": (header + b"DK-1;" + FILLER * (MAX_STRING_BYTES + 1) + b"\n", "csv's cell limit"),
        "long-row.csv": (header + b"a;" * (MAX_RECORD_BYTES // 2 + 1) + b"\n", "limit MAX_RECORD_BYTES"),
        # A quote never closed: the cell goes on over every line after it, up to csv's limit.
        "open-quote.csv": (header + b'"' + (b"q" * 1_000 + b"\n") * 1_000, "csv's cell limit"),
        # Cells that each hold a line break: one row over many lines.
        "many-line-row.csv": (
            header + CELL_OF_TWO_LINES * (MAX_RECORD_BYTES // len(CELL_OF_TWO_LINES) + 1) + b"\n",
            "limit MAX_RECORD_BYTES",
        ),
        "not-utf8.csv": (header + b"DK-1;\xff\xfe\n", "bytes that are not UTF-8"),
        "utf16.csv": (export.decode("utf-8").encode("utf-16"), "bytes that are not UTF-8"),
    }


ADAPTERS: dict[str, tuple[Callable[[], dict[str, tuple[bytes, str | None]]], list[str]]] = {
    "nav-ads": (lambda: _json_cases(lambda r: b"[" + r + b"]"), []),
    "eures-hropen": (lambda: _json_cases(lambda r: b"[" + r + b"]"), []),
    "france-travail-offers": (lambda: _json_cases(lambda r: b'{"resultats": [' + r + b"]}"), []),
    "france-travail-profiles": (lambda: _json_cases(lambda r: b'{"profils": [' + r + b"]}"), []),
    "jobtech-ads": (lambda: _json_cases(lambda r: b'{"total": 1, "hits": [' + r + b"]}"), []),
    "europass-xml": (
        lambda: {
            **_json_cases(lambda r: b'{"SkillsPassport": ' + r + b"}"),
            **_xml_cases("Candidate", EUROPASS_V4),
        },
        ["--country", "SN"],
    ),
    "eures-hrxml": (_hrxml_cases, []),
    "tabular": (_csv_cases, ["--mapping", str(FIXTURES / "exports" / "sn-anpej-2026.toml")]),
}


def _capped() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))


@pytest.mark.processes
@pytest.mark.parametrize("adapter", sorted(ADAPTERS))
def test_each_reader_refuses_hostile_files_in_one_line_under_a_memory_cap(adapter, tmp_path):
    cases, options = ADAPTERS[adapter]
    files = {}
    for name, (content, _) in cases().items():
        files[name] = tmp_path / name
        files[name].write_bytes(content)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "hub.entrypoints.cli",
            "adapter",
            "check",
            adapter,
            *map(str, files.values()),
            "--origin",
            "xx-spe",
            *options,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=DEADLINE_S,
        preexec_fn=_capped,
    )
    out = proc.stdout + proc.stderr
    # 1: rows refused (2: the command could not start); a signal would be negative.
    assert proc.returncode == 1, out[-3000:]
    assert "Traceback" not in out and "MemoryError" not in out, out[-3000:]
    assert FILLER.decode() * 40 not in out  # the content is never echoed
    for name, (_, says) in cases().items():
        path = str(files[name])
        assert f"{path}: 1 row(s), of which 1 refused" in out, (name, out[-3000:])
        if says is not None:
            lines = [line for line in out.splitlines() if line.startswith(f"  {path}") and says in line]
            assert len(lines) == 1, (name, says, out[-3000:])


# -- the guards, in process ------------------------------------------------------------------------


class _Trickle:
    """A file that gives a few bytes a read (in turn, the sizes given), so that every token is
    cut somewhere between two reads."""

    def __init__(self, data: bytes, sizes: list[int]) -> None:
        self.data, self.sizes, self.at, self.reads = data, sizes, 0, 0

    def read(self, size: int) -> bytes:
        step = min(size, self.sizes[self.reads % len(self.sizes)])
        self.reads += 1
        chunk = self.data[self.at : self.at + step]
        self.at += len(chunk)
        return chunk


def _read_through(data: bytes, sizes: list[int] | None = None, record_depth: int = 0) -> JsonGuard:
    """The guard after reading all of ``data`` (in reads of ``sizes``, else of READ_BYTES)."""
    guard = JsonGuard(_Trickle(data, sizes) if sizes else io.BytesIO(data), record_depth)  # type: ignore[arg-type]
    while guard.read(READ_BYTES):
        pass
    return guard


@pytest.mark.parametrize("sizes", [None, [1], [7, 3, 11]])
@pytest.mark.parametrize(
    ("at_limit", "past_limit", "limit"),
    [
        (b"[" * MAX_DEPTH + b"]" * MAX_DEPTH, b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1), "MAX_DEPTH"),
        (
            b"[" + b"9" * MAX_NUMBER_CHARS + b"]",
            b"[-" + b"9" * MAX_NUMBER_CHARS + b"]",
            "MAX_NUMBER_CHARS",
        ),
        (b'{"a": 1.5e-' + b"7" * 95 + b"}", b'{"a": 1.5e-' + b"7" * 96 + b"}", "MAX_NUMBER_CHARS"),
    ],
)
def test_the_json_guard_passes_a_limit_and_refuses_one_past_it(at_limit, past_limit, limit, sizes):
    _read_through(at_limit, sizes)
    with pytest.raises(LimitExceeded, match=f"limit {limit}"):
        _read_through(past_limit, sizes)


def test_strings_are_measured_exactly_with_their_escapes_across_reads():
    value = b'\\"' * (MAX_STRING_BYTES // 2)  # exactly the limit, as written
    _read_through(b'["' + value + b'"]')
    _read_through(b'["' + value + b'"]', [READ_BYTES - 1, 5])
    with pytest.raises(LimitExceeded, match="limit MAX_STRING_BYTES"):
        _read_through(b'["' + value + b'a"]', [READ_BYTES - 1, 5])


def test_brackets_quotes_and_backslashes_inside_strings_are_not_structure():
    hidden = b'["' + b'[{\\"\\\\' * 200 + b'", "\\\\", "]]]]"]'
    for sizes in ([1], [2], [3], None):
        guard = _read_through(hidden, sizes)
        assert (guard.depth, guard._string) == (0, None)
    # A string ending in an escaped backslash closes; the brackets after it count.
    with pytest.raises(LimitExceeded, match="limit MAX_DEPTH"):
        _read_through(b'["\\\\", ' + b"[" * MAX_DEPTH + b"]" * MAX_DEPTH + b"]", [1])


def test_a_record_is_measured_from_where_it_starts_and_named_by_its_index():
    small = b'{"id": "' + b"s" * 1_000 + b'"}'
    big = b'{"id": [' + b'"abcdefghijklm",' * (MAX_RECORD_BYTES // 16) + b'"z"]}'
    guard = _read_through(b"[" + b",".join([small] * 20_000) + b"]", record_depth=1)  # 20 MB in all
    assert guard.records == 20_000
    guard = JsonGuard(io.BytesIO(b"[" + small + b"," + small + b"," + big + b"]"), record_depth=1)
    with pytest.raises(LimitExceeded, match="limit MAX_RECORD_BYTES"):
        while guard.read(READ_BYTES):
            pass
    assert guard.records == 3  # the third record, $[2], is the one refused


def test_the_attack_integer_is_refused_before_the_parser_reads_it():
    events = []
    with pytest.raises(LimitExceeded, match="limit MAX_NUMBER_CHARS"):
        for event in ijson.parse(JsonGuard(io.BytesIO(b'{"a": 1' + b"0" * DIGITS + b"}"))):
            events.append(event)
    assert events == []  # the parser was given none of the file's bytes


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=25,
)


@settings(max_examples=150, deadline=None)
@given(
    records=st.lists(_json_values, max_size=6),
    sizes=st.lists(st.integers(min_value=1, max_value=40), min_size=1, max_size=5),
    ascii_only=st.booleans(),
)
def test_the_guard_follows_any_json_as_a_parser_does(records, sizes, ascii_only):
    data = json.dumps(records, ensure_ascii=ascii_only).encode()
    guard = _read_through(data, sizes, record_depth=1)
    assert (guard.depth, guard._string, guard._escape) == (0, None, False)
    assert guard.records == sum(isinstance(r, list | dict) for r in records)


def test_the_last_of_duplicate_keys_wins(codelists, tmp_path):
    ad = json.loads((FIXTURES / "nav" / "ad_seasonal.json").read_text())
    adapter = load("nav-ads", codelists=codelists, origin_participant_id="no-nav")
    text = json.dumps(ad)
    active, inactive = '"status": "ACTIVE"', '"status": "INACTIVE"'
    assert active in text
    for twice, published in ((f"{inactive}, {active}", True), (f"{active}, {inactive}", False)):
        path = tmp_path / "ad.json"
        path.write_text(text.replace(active, twice))
        (converted,) = adapter.read(path)
        assert converted.ok is published, converted.problems


def test_an_hrxml_file_of_many_documents_is_held_one_document_at_a_time(tmp_path):
    vacancy = (FIXTURES / "hrxml" / "vacancy_seasonal_es.xml").read_text()
    body = vacancy[vacancy.index("<PositionOpening") :]
    path = tmp_path / "many.xml"
    path.write_text(f'<?xml version="1.0"?><Vacancies xmlns="{HR}">' + body * 50 + "</Vacancies>")
    seen = 0
    for root, document in xml_documents(path, split=lambda tag: True):
        seen += 1
        # The tree holds at most the document being parsed: those handed over are gone from it.
        assert len(root) <= 1 and document not in list(root)
        assert document.tag == f"{{{HR}}}PositionOpening"
    assert seen == 50


def test_utf16_xml_is_read_like_utf8(codelists, tmp_path):
    """XML says its own encoding (XML 1.0 §4.3.3): a UTF-16 file with its byte order mark is read."""
    adapter = load("eures-hrxml", codelists=codelists, origin_participant_id="es-sepe")
    source = FIXTURES / "hrxml" / "vacancy_seasonal_es.xml"
    utf16 = tmp_path / "utf16.xml"
    utf16.write_bytes(source.read_text().replace('encoding="UTF-8"', 'encoding="UTF-16"').encode("utf-16"))
    (before,), (after,) = adapter.read(source), adapter.read(utf16)
    assert after.ok and after.record == before.record


@pytest.mark.parametrize("shape", ["one offer", "a list"])
def test_a_number_past_a_double_is_refused_in_one_line(shape, codelists, tmp_path):
    """1e999 is a number JSON allows and a double holds as infinity: read whole, the pay of an HR
    Open offer raised OverflowError out of the reader (yajl refuses it in a list)."""
    adapter = load("eures-hropen", codelists=codelists, origin_participant_id="es-sepe")
    offer = (FIXTURES / "hropen" / "position_opening_seasonal.json").read_text()
    assert '"value": 9.26' in offer
    infinite = offer.replace('"value": 9.26', '"value": 1e999')
    path = tmp_path / "offers.json"
    path.write_text(infinite if shape == "one offer" else f"[{infinite}]")
    (refused,) = adapter.read(path)
    assert not refused.ok and "a number past a double's range" in refused.problems[0].reason


def test_an_xml_value_past_the_string_limit_is_left_out_with_a_warning_and_the_record_read(
    codelists, tmp_path
):
    """A Europass CV may carry attached documents and a photo as base64 text, which no adapter
    reads: one past MAX_STRING_BYTES is not kept (nor is an attribute that long), the reader warns
    naming the element, and the CV converts as it does without them."""
    adapter = load(
        "europass-xml", codelists=codelists, origin_participant_id="sn-anpej", subject_key=b"k" * 32
    )
    source = FIXTURES / "europass" / "SN-2026-00017.xml"
    cv = source.read_text("utf-8")
    big = "QUJD" * (MAX_STRING_BYTES // 2)  # 2 MiB of base64
    attachments = "".join(
        f'<Attachment id="ATT_{i}"><Name>diplome-{i}.pdf</Name><MimeType>application/pdf</MimeType>'
        f"<Data>{big}</Data></Attachment>"
        for i in range(6)  # 12 MiB in all: more than one record holds, yet none of it is held
    )
    path = tmp_path / source.name  # the dossier number in the name keys the records
    path.write_text(
        cv.replace("</LearnerInfo>", f"</LearnerInfo>{attachments}", 1).replace(
            "<SkillsPassport ", f'<SkillsPassport photo="{big}" ', 1
        ),
        "utf-8",
    )
    before = list(adapter.read(source))
    profile, personal = adapter.read(path)
    assert profile.ok and personal.ok
    assert (profile.record, personal.record) == (before[0].record, before[1].record)
    warnings = [(p.field, p.reason, p.severity) for p in profile.problems]
    assert len(warnings) == 7 and {severity for *_, severity in warnings} == {"warning"}
    assert warnings[0][0] == "/" and "attribute photo" in warnings[0][1]
    assert [field for field, *_ in warnings[1:]] == ["Attachment/Data"] * 6
    assert all("limit MAX_STRING_BYTES" in reason for _, reason, _ in warnings)
    assert "QUJD" not in "".join(map(str, profile.problems))


def test_what_an_xml_record_holds_is_bounded_not_what_it_spans(tmp_path):
    """MAX_RECORD_BYTES counts what the tree holds for one record (its texts, attributes, and
    ELEMENT_CHARS an element): values left out do not count; many small elements do."""
    path = tmp_path / "doc.xml"
    path.write_text("<a>" + ("<b>" + "x" * (MAX_STRING_BYTES + 1) + "</b>") * 10 + "</a>")
    ((root, _),) = xml_documents(path, split=lambda _: False)
    assert len(root) == 10 and all(child.text is None for child in root)
    assert dropped_values(root) == [("b", "text")] * 10
    path.write_text("<a>" + "<b/>" * (MAX_RECORD_BYTES // ELEMENT_CHARS) + "</a>")
    with pytest.raises(LimitExceeded, match="limit MAX_RECORD_BYTES"):
        list(xml_documents(path, split=lambda _: False))
