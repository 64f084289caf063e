"""The serving process's start-up objects are kept out of the garbage collector's full passes."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import gc
from hub.bootstrap import settle_heap
from hub.domain import codes
objects = len(gc.get_objects())
settle_heap()
assert codes._languages.cache_info().currsize == 1, "the language list was not loaded before freezing"
assert gc.get_freeze_count() >= objects, (gc.get_freeze_count(), objects)
gc.collect()
print(len(gc.get_objects()))
"""


def test_settle_heap_loads_the_code_lists_and_freezes_what_start_up_built():
    """In a process of its own (a frozen heap would outlive this test). After settle_heap, a full
    pass sees none of the objects built before it."""
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120, check=True
    ).stdout.split()
    tracked = int(out[0])
    assert tracked < 5000, f"{tracked} objects still tracked after the freeze"
