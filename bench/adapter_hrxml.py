"""EURES HR-XML adapter: records/s and peak memory on one file of many vacancies.

Run: .venv/bin/python bench/adapter_hrxml.py [--size-mb 100]
Writes a file of PositionOpenings (the test vacancy, each with its own DocumentID) under one root
element, reads it with the adapter, and prints the rate and the peak RSS next to the RSS before
reading: the file is read one document at a time, so memory must not grow with it (a 100 MB file
took 544 MB when it was parsed whole; issue 25, item 1).
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from adapters.codelists import CodeLists  # noqa: E402
from adapters.hrxml import EuresHrXml  # noqa: E402

VACANCY = ROOT / "tests" / "fixtures" / "hrxml" / "vacancy_seasonal_es.xml"
HR = "http://www.hr-xml.org/3"
OA = "http://www.openapplications.org/oagis/9"


def write(path: Path, size: int) -> int:
    """A file of at least ``size`` bytes of vacancies; how many it holds."""
    text = VACANCY.read_text(encoding="utf-8")
    body = re.sub(r"<PositionOpening[^>]*>", '<PositionOpening validFrom="2026-10-05">', text, count=1)
    body = body[body.index("<PositionOpening") :]
    written = n = 0
    with path.open("w", encoding="utf-8") as out:
        out.write(f'<?xml version="1.0" encoding="UTF-8"?>\n<Vacancies xmlns="{HR}" xmlns:oa="{OA}">\n')
        while written < size:
            written += out.write(body.replace("es-sepe-2026-HUE-0042", f"es-sepe-2026-HUE-{n}"))
            n += 1
        out.write("</Vacancies>\n")
    return n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "vacancies.xml"
        count = write(path, args.size_mb * 1_000_000)
        adapter = EuresHrXml(CodeLists.shipped(), "es-sepe", ("FR",))
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"machine: {os.cpu_count()} cores; {count:,} vacancies, {path.stat().st_size / 1e6:,.0f} MB")
        start, good, bad = time.perf_counter(), 0, 0
        for converted in adapter.read(path):
            good, bad = (good + 1, bad) if converted.ok else (good, bad + 1)
        seconds = time.perf_counter() - start
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"  {good:,} records ({bad} refused), {(good + bad) / seconds:,.0f} records/s")
        print(f"  peak RSS {peak:.0f} MB (before reading {base:.0f} MB; one document at a time)")


if __name__ == "__main__":
    main()
