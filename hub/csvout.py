"""CSV for spreadsheets: every CSV the project writes goes through here.

A cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is
a formula to a spreadsheet (OWASP, "CSV Injection"): an offer title
``=HYPERLINK(…)`` from another participant would run in the receiving SPE's
office. Such a cell is written with a leading apostrophe, which spreadsheets
show as text. A plain signed number (a phone number in E.164, a negative
count) is left as it is: it cannot be a formula, and the apostrophe would
corrupt it for an import.

defusedcsv does the same for ``= + - @ | %`` but leaves a leading tab or
carriage return alone and quotes E.164 numbers, hence these few lines.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Mapping
from typing import IO, Any

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
PLAIN_NUMBER = re.compile(r"[+-]?[0-9]+(?:[.,][0-9]+)*")


def neutralise(value: Any) -> Any:
    """The cell as a spreadsheet may open it: text that would start a formula gets a leading '."""
    if isinstance(value, str) and value.startswith(FORMULA_START) and not PLAIN_NUMBER.fullmatch(value):
        return "'" + value
    return value


class Writer:
    """csv.writer whose rows are neutralised."""

    def __init__(self, handle: IO[str], **options: Any) -> None:
        self._writer = csv.writer(handle, **options)

    def writerow(self, row: Iterable[Any]) -> None:
        self._writer.writerow([neutralise(cell) for cell in row])


class DictWriter(csv.DictWriter):  # type: ignore[type-arg]
    """csv.DictWriter whose rows (and header) are neutralised."""

    def writerow(self, rowdict: Mapping[str, Any]) -> Any:
        return super().writerow({key: neutralise(value) for key, value in rowdict.items()})

    def writeheader(self) -> Any:
        return super().writerow({name: neutralise(name) for name in self.fieldnames})
