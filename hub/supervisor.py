"""Several serving processes on one port (SPEHUB_PROCESSES): the hub's Python work on every core.

A hub process spends most of a publication in Python (parsing, validating, sealing, building the
index rows) under one interpreter lock. ``spe-hub serve`` with SPEHUB_PROCESSES=N starts N
``spe-hub serve`` processes that bind the same port with SO_REUSEPORT: the kernel spreads the
incoming connections over them. Each is a whole hub on the shared PostgreSQL database (what stays
correct across processes: docs/scaling.md). This process only starts them, passes SIGTERM and
SIGINT on, and stops them all when one ends unasked (the service manager then restarts the hub).
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from typing import Any

from hub.config import Settings

log = logging.getLogger("spehub")

POLL_SECONDS = 0.2
KILL_AFTER_SECONDS = 30.0
"""How long past its grace a process that does not stop on SIGTERM is given before SIGKILL."""


def child_environment(settings: Settings, environ: Mapping[str, str], index: int) -> dict[str, str]:
    """The environment of serving process ``index``: one process sharing the port, its own metrics
    port (the configured one + ``index``), and background rankings in the first process only
    (two processes ranking the same offer would do the work twice)."""
    env = dict(environ)
    env["SPEHUB_PROCESSES"] = "1"
    env["SPEHUB_PROCESS_INDEX"] = str(index)
    if settings.metrics_address:
        host, _, port = settings.metrics_address.rpartition(":")
        env["SPEHUB_METRICS_LISTEN"] = f"{host}:{int(port) + index if int(port) else 0}"
    if index > 0:
        env["SPEHUB_MATCH_RANKING_SECONDS"] = "0"
    return env


def supervise(settings: Settings, environ: Mapping[str, str]) -> int:
    """Start ``settings.processes`` serving processes and wait. Returns 0 after a requested stop,
    1 when a process ended unasked (the others are stopped then)."""
    stopping = threading.Event()

    def _on_signal(signum: int, _frame: Any) -> None:
        log.info("signal %s: stopping the %d serving processes", signal.Signals(signum).name, len(children))
        stopping.set()

    children: list[subprocess.Popen[bytes]] = []
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    for index in range(settings.processes):
        children.append(
            subprocess.Popen(
                [sys.executable, "-m", "hub.entrypoints.cli", "serve"],
                env=child_environment(settings, environ, index),
            )
        )
    log.info(
        "SPE Hub: %d serving processes share %s (pids %s)",
        len(children),
        settings.listen_address,
        ", ".join(str(c.pid) for c in children),
    )
    failed = None
    while not stopping.wait(POLL_SECONDS):
        ended = [(i, c.returncode) for i, c in enumerate(children) if c.poll() is not None]
        if ended:
            failed = ended[0]
            log.error("serving process %d ended unasked (exit status %s): stopping the others", *failed)
            break
    _stop_all(children, settings.grace_seconds + KILL_AFTER_SECONDS)
    return 0 if failed is None else 1


def _stop_all(children: list[subprocess.Popen[bytes]], patience: float) -> None:
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + patience
    for child in children:
        try:
            child.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.error("serving process %d did not stop in %.0f s: killed", child.pid, patience)
            child.kill()
            child.wait()
