"""What one export may hold, for every adapter reader: the limits, and the guards that enforce them.

An export comes from outside the hub's trust (an SPE's system, or a file a person picked), so a
reader bounds what a file can make it do: nesting depth, the length of a number, of a string and
of one record. Past a limit the reader stops with one line naming the record and the limit, and
memory stays bounded whatever the file (docs/limits.md, "Exports an adapter reads").

JSON is checked byte by byte *before* a parser sees it (``JsonGuard``, in front of ijson's C
parser): yajl builds every event's path for a whole buffer at once (``"[" * 20_000`` took 1 GB)
and ijson 3.6's C backend crashes the process on an integer of 4,400 digits, so neither may see
such bytes. XML is parsed by defusedxml (no entities, no external references) with a target that
counts depth and text as expat delivers them (``GuardedTarget``). CSV rows and cells are bounded
as the rows are read (``bounded_lines``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from itertools import accumulate, pairwise
from pathlib import Path
from typing import Any, BinaryIO, TextIO
from xml.etree.ElementTree import Element, TreeBuilder  # nosec: the tree only; defusedxml parses

from defusedxml.ElementTree import DefusedXMLParser

from adapters.base import Converted, Problem

MAX_DEPTH = 64
"""Nesting: JSON arrays and objects inside each other, XML elements inside each other (the
records read have 4 to 12 levels)."""

MAX_NUMBER_CHARS = 100
"""Characters of one JSON number (Python refuses integers of more than 4,300 digits; a real
value has fewer than 30)."""

MAX_STRING_BYTES = 1 << 20
"""Bytes of one JSON string (escapes counted as written) or of one XML text or attribute value:
1 MiB, a hundred times a long offer description."""

MAX_RECORD_BYTES = 8 << 20
"""Bytes of one record in the file: an item of an array of records, a JSON document read whole
(a file of one record, or records in a shape found by content), an XML document or file, a CSV
row. 8 MiB: what one record decodes to stays far below the 1 GB a reader is tested under."""

READ_BYTES = 64 << 10
"""What a guard reads and checks at a time: the record and string sizes are measured to this."""


def mib(n: int) -> str:
    return f"{n / (1 << 20):g} MiB"


class LimitExceeded(Exception):
    """A file passes one of the limits above; the message names the limit (never the content)."""


def depth_exceeded() -> LimitExceeded:
    return LimitExceeded(f"nested more than {MAX_DEPTH} levels deep (limit MAX_DEPTH)")


def string_exceeded() -> LimitExceeded:
    return LimitExceeded(f"a string or text longer than {mib(MAX_STRING_BYTES)} (limit MAX_STRING_BYTES)")


def record_exceeded() -> LimitExceeded:
    return LimitExceeded(f"a record larger than {mib(MAX_RECORD_BYTES)} (limit MAX_RECORD_BYTES)")


# -- JSON ------------------------------------------------------------------------------------------

_NUMBER_CHARS = b"-+.0123456789eE"
_NUMBERS_AS_ZERO = bytes.maketrans(_NUMBER_CHARS, b"0" * len(_NUMBER_CHARS))
_LONG_NUMBER = b"0" * (MAX_NUMBER_CHARS + 1)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_NOT_STRUCTURE = bytes(b for b in range(256) if b not in b'[]{}"')
_STEP = [0] * 256  # what a bracket does to the depth
_STEP[ord("[")] = _STEP[ord("{")] = 1
_STEP[ord("]")] = _STEP[ord("}")] = -1
_UTF16_32 = (b"\xff\xfe", b"\xfe\xff", b"\x00\x00\xfe\xff")


class JsonGuard:
    """A binary file, read through checks of the JSON limits: ``read`` raises LimitExceeded before
    returning bytes that would pass one, so the parser behind it never sees them.

    It follows strings (escapes included), numbers and brackets as a JSON lexer does; on bytes
    that are not JSON its view may drift, but the parser stops at the first such byte, before
    anything after it. A record is a container opened at ``record_depth`` (0: the whole
    document; 1: the items of a top-level array), and its size is measured to ``READ_BYTES``."""

    def __init__(self, handle: BinaryIO, record_depth: int = 0) -> None:
        self.handle = handle
        self.record_depth = record_depth
        self.depth = 0
        self.offset = 0  # bytes checked so far
        self.records = 0  # containers opened at record_depth: the record being read is the last
        self.record_from: int | None = None  # where the chunk of the record being read began
        self._number = b""  # a number the last chunk ended in: its characters so far
        self._string: int | None = None  # the bytes of the string the last chunk left open, if one is
        self._escape = False  # the last chunk ended on a backslash inside a string

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            return b"".join(iter(lambda: self.read(READ_BYTES), b""))
        chunk = self.handle.read(min(size, READ_BYTES))  # ijson asks for 0 to tell bytes from text
        if chunk:
            self.check(chunk)
        return chunk

    def check(self, chunk: bytes) -> None:
        """Follow one chunk; raise LimitExceeded at the first limit it passes.

        Each step is one pass in C over the chunk (a regular expression over each string cost as
        much as converting the records): escaped backslashes and quotes become "__", so that the
        quotes left open and close strings; the quotes and brackets alone, split on the quotes,
        give the brackets outside strings (the even parts). Strings are told from what is
        between them exactly, so a record cannot hide brackets or numbers in one."""
        start = self.offset
        self.offset += len(chunk)
        carried = 0  # the bytes of a string a previous chunk left open
        if self._string is not None:
            carried = self._string
            if self._escape:  # the byte a backslash at the end of the last chunk escapes
                chunk, carried = chunk[1:], carried + 1
            data = b'"' + chunk  # as if the string opened here
        else:
            data = self._number + chunk
        self._number = b""
        if b"\\" in data:
            data = data.replace(b"\\\\", b"__").replace(b'\\"', b"__")
        # A string that starts and ends in one chunk is shorter than READ_BYTES, so within the
        # limit: only one begun in an earlier chunk, or going on into the next, can pass it.
        if carried:
            end = data.find(b'"', 1)
            if (end if end >= 0 else len(data)) - 1 + carried > MAX_STRING_BYTES:
                raise string_exceeded()  # in the record read since an earlier chunk
        # The brackets outside strings. Two quotes side by side in the quotes and brackets alone
        # are a string without brackets, or two strings with none between them: dropping them
        # keeps the brackets outside strings and which side of a string the rest is on.
        outside = data.translate(None, _NOT_STRUCTURE).replace(b'""', b"")
        if b'"' in outside:  # strings with brackets in them
            outside = b"".join(outside.split(b'"')[0::2])
        if data.count(b'"') % 2:  # the last string goes on in the next chunk
            opened = data.rfind(b'"')
            self._string = len(data) - opened - 1 + (carried if opened == 0 else 0)
            self._escape = data.endswith(b"\\")  # escaped pairs are "__" by now
            if self._string > MAX_STRING_BYTES:
                self._brackets(outside, start)
                raise string_exceeded()
        else:
            self._string, self._escape = None, False
        # Numbers: their characters as one byte, "0", and one search for a run. A run inside a
        # string ("-----…") is told apart from a number by the slower look between the strings.
        if data.translate(_NUMBERS_AS_ZERO).find(_LONG_NUMBER) >= 0:
            self._numbers(data, start)
        self._brackets(outside, start)
        if self._string is None:
            kept = len(data) - len(data.rstrip(_NUMBER_CHARS))
            if kept:  # a number may go on in the next chunk
                self._number = data[-kept:]
        self._check_record()

    def _numbers(self, data: bytes, start: int) -> None:
        """Raise LimitExceeded if a number between the strings of a chunk is too long (after the
        brackets before it, so that the record it is in is counted)."""
        # Each string becomes one "_", so that numbers on either side of one stay apart.
        bare = b"_".join(data.split(b'"')[0::2])
        long = bare.translate(_NUMBERS_AS_ZERO).find(_LONG_NUMBER)
        if long >= 0:
            self._brackets(bare[:long], start)
            raise LimitExceeded(
                f"a number longer than {MAX_NUMBER_CHARS} characters (limit MAX_NUMBER_CHARS)"
            )

    def _brackets(self, structure: bytes, start: int) -> None:
        """Follow the brackets of a chunk outside its strings: the depth after each, in C."""
        brackets = structure.translate(None, _NOT_BRACKETS)
        if not brackets:
            return
        levels = list(accumulate(map(_STEP.__getitem__, brackets), initial=self.depth))
        top, deepest = self.record_depth, max(levels)
        if deepest > MAX_DEPTH:
            past = next(i for i, d in enumerate(levels) if d > MAX_DEPTH)
            self.records += sum(1 for pair in pairwise(levels[: past + 1]) if pair == (top, top + 1))
            raise depth_exceeded()
        self.depth = levels[-1]
        if min(levels) < 0:  # more closed than opened: not JSON, the parser stops there
            return
        steps = bytes(levels)
        if self.record_from is not None and bytes((top + 1, top)) in steps:
            self._check_record()  # the record read since an earlier chunk ends in this one
        opened = steps.count(bytes((top, top + 1)))  # records begun in this chunk
        self.records += opened
        if self.depth <= top:
            self.record_from = None
        elif opened or self.record_from is None:  # the record read at the end began in this chunk
            self.record_from = start

    def _check_record(self) -> None:
        if self.record_from is not None and self.offset - self.record_from > MAX_RECORD_BYTES:
            raise record_exceeded()


def utf8_start(handle: BinaryIO) -> str | None:
    """Put a JSON file at its first byte past a UTF-8 byte order mark (Windows tools write one:
    harmless, so skipped), or say why it is not UTF-8 (a UTF-16 or UTF-32 one: RFC 8259)."""
    head = handle.read(4)
    if head.startswith(_UTF16_32):
        return "UTF-16 or UTF-32 (its byte order mark says so): JSON exports are read as UTF-8"
    handle.seek(handle.tell() - len(head) + (3 if head.startswith(b"\xef\xbb\xbf") else 0))
    return None


def json_fault(exc: Exception) -> str:
    """Why a file is not JSON, in words and without its content (parsers' messages quote the bytes
    around the fault)."""
    text = str(exc)
    if isinstance(exc, UnicodeDecodeError) or "UTF8" in text:
        why = "bytes that are not UTF-8"
    elif (
        "premature EOF" in text
        or "Unterminated" in text
        or (isinstance(exc, json.JSONDecodeError) and exc.pos >= len(exc.doc.rstrip()) - 1)
    ):
        why = "the file ends before the JSON does: cut short?"
    elif "overflow" in text:
        why = "a number past a double's range (1.8e308)"
    elif any(words in text for words in ("invalid char", "malformed number", "is not a JSON value")):
        why = "a character or number JSON does not allow there (NaN and Infinity are not JSON values)"
    else:
        why = "a syntax error"
    return f"not readable JSON ({type(exc).__name__}: {why})"


def xml_fault(exc: Exception) -> str:
    """Why a file is not readable XML, in words and without its content."""
    text = str(exc)
    if "no element found" in text or "unclosed token" in text:
        why = ": the file ends before its root element does: cut short?"
    elif "not well-formed" in text:
        why = ": not well-formed, or bytes not in its encoding"
    else:
        why = ""
    return f"not readable XML ({type(exc).__name__}{why})"


def load_json(handle: BinaryIO) -> Any:
    """A whole JSON document (UTF-8, after any byte order mark), read through a JsonGuard: one
    record, so at most MAX_RECORD_BYTES. Raises LimitExceeded, or ValueError for bytes that are
    not JSON (NaN and Infinity included: RFC 8259 has no such values)."""
    text = JsonGuard(handle).read().decode("utf-8")
    return json.loads(text, parse_constant=not_json, parse_float=_finite)


def _finite(text: str) -> float:
    """A JSON number as a double, unless it is past a double's range (yajl refuses those too)."""
    value = float(text)
    if math.isinf(value):
        raise ValueError("numeric (floating point) overflow")
    return value


def not_json(constant: str) -> Any:
    """NaN and Infinity: Python's json reads them, JSON (RFC 8259) has no such values."""
    raise ValueError(f"{constant} is not a JSON value")


def whole_number(text: str) -> int | None:
    """A count written in ASCII digits (at most MAX_NUMBER_CHARS of them), else None: int() takes
    any script's digits and refuses 4,300 or more with an error."""
    return int(text) if len(text) <= MAX_NUMBER_CHARS and text.isascii() and text.isdigit() else None


# -- XML -------------------------------------------------------------------------------------------


DROPPED = "{urn:spehub:adapters}dropped"
"""The attribute a reader sets on an element whose over-long text or attribute it did not keep
(``dropped_values``): what was dropped, for the adapter's warning."""

ELEMENT_CHARS = 64
"""What one XML element counts towards MAX_RECORD_BYTES beside its name, texts and attributes:
about what the tree holds for it."""


class _Target:
    """The tree builder behind defusedxml's parser, checking the limits as expat delivers the
    document: depth, and the characters the tree holds for one record. A text run or attribute
    value longer than MAX_STRING_BYTES is not kept: its element is marked (DROPPED) and the reader
    goes on, so that a CV carrying a large attached document or photo, which no adapter reads,
    still converts (an adapter warns about each such element). With ``split``, each child of the
    root is handed over as it ends (``ended``) and dropped from the tree: memory holds one at a
    time."""

    def __init__(self, split: Callable[[str], bool]) -> None:
        self.builder = TreeBuilder()
        self.split = split
        self.splitting = False
        self.root: Element | None = None
        self.open: list[Element] = []
        self.pending: list[str] = []  # the current text run, given to the builder when it ends
        self.text = 0  # its length; -1 while the rest of an over-long run is passed over
        self.kept = 0  # characters held for the current record
        self.ended: list[Element] = []

    def _keep(self, chars: int) -> None:
        self.kept += chars
        if self.kept > MAX_RECORD_BYTES:
            raise record_exceeded()

    def _end_run(self) -> None:
        if self.pending:
            self.builder.data("".join(self.pending))
            self.pending.clear()
        self.text = 0

    def start(self, tag: str, attrs: dict[str, str]) -> Element:
        self._end_run()
        if len(self.open) >= MAX_DEPTH:
            raise depth_exceeded()
        long = [name for name, value in attrs.items() if len(value) > MAX_STRING_BYTES]
        if long:
            attrs = {name: value for name, value in attrs.items() if name not in long}
        self._keep(ELEMENT_CHARS + len(tag) + sum(len(k) + len(v) for k, v in attrs.items()))
        element = self.builder.start(tag, attrs)
        if long:
            element.set(DROPPED, "attribute " + ", ".join(name.rpartition("}")[2] for name in long))
        self.open.append(element)
        if self.root is None:
            self.root, self.splitting = element, self.split(tag)
        return element

    def data(self, data: str) -> None:
        if self.text < 0:
            return
        self.text += len(data)
        if self.text > MAX_STRING_BYTES:
            self.kept -= self.text - len(data)
            self.pending.clear()
            self.text = -1
            if self.open:
                self.open[-1].set(DROPPED, "text")
            return
        self.pending.append(data)
        self._keep(len(data))

    def end(self, tag: str) -> Element:
        self._end_run()
        element = self.builder.end(tag)
        self.open.pop()
        if self.splitting and len(self.open) == 1 and self.root is not None:
            self.ended.append(element)
            self.root.remove(element)
            self.kept = 0
        return element

    def close(self) -> Element:
        return self.builder.close()


def xml_documents(path: Path, split: Callable[[str], bool]) -> Iterator[tuple[Element, Element]]:
    """(root, document) pairs of an XML file parsed with defusedxml (no entities, no external
    references), within the limits. When ``split(root tag)`` is true each child of the root is a
    record, yielded as soon as it ends and then dropped; otherwise the whole file is one record,
    yielded as (root, root) at the end. A value past MAX_STRING_BYTES is left out and its element
    marked (``dropped_values``). Raises LimitExceeded, OSError, ParseError, or
    DefusedXmlException."""
    target = _Target(split)
    parser = DefusedXMLParser(target=target)
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(READ_BYTES), b""):
            parser.feed(chunk)
            assert target.root is not None or not target.ended
            for element in target.ended:
                yield target.root, element  # type: ignore[misc]
            target.ended.clear()
    root = parser.close()
    if not target.splitting:
        yield root, root


def dropped_values(document: Element) -> list[tuple[str, str]]:
    """(path of local names below ``document``, what was left out) for each element of it whose
    text or attribute the reader did not keep (past MAX_STRING_BYTES)."""
    found: list[tuple[str, str]] = []

    def walk(element: Element, path: str) -> None:
        what = element.get(DROPPED)
        if what is not None:
            found.append((path or "/", what))
        for child in element:
            walk(child, f"{path}/{child.tag.rpartition('}')[2]}".lstrip("/"))

    walk(document, "")
    return found


def dropped_warnings(converted: Iterable[Converted], document: Element) -> Iterator[Converted]:
    """The results of converting ``document``, the first one carrying a warning for each value the
    reader left out of it."""
    dropped = dropped_values(document)
    for i, result in enumerate(converted):
        if i == 0 and dropped:
            result = replace(
                result,
                problems=(
                    *result.problems,
                    *(
                        Problem(
                            result.location,
                            path,
                            f"dropped: its {what} is longer than {mib(MAX_STRING_BYTES)} "
                            "(limit MAX_STRING_BYTES); the rest of the record is read",
                            "warning",
                        )
                        for path, what in dropped
                    ),
                ),
            )
        yield result


# -- CSV -------------------------------------------------------------------------------------------


class BoundedLines:
    """The lines of a text file for csv.reader, each row (the lines one record spans, quoted line
    breaks included) at most MAX_RECORD_BYTES characters: ``row_read()`` after each row starts
    the count again. Raises LimitExceeded."""

    def __init__(self, handle: TextIO) -> None:
        self.handle = handle
        self.size = 0

    def __iter__(self) -> Iterator[str]:
        while line := self.handle.readline(MAX_RECORD_BYTES + 1):
            self.size += len(line)
            if self.size > MAX_RECORD_BYTES:
                raise record_exceeded()
            yield line

    def row_read(self) -> None:
        self.size = 0
