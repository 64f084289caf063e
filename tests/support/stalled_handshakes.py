"""A flood of TCP connections that never finish their TLS handshake, for the connection-flood
test and bench/connection_flood.py: loopback only, bounded in count and time."""

from __future__ import annotations

import contextlib
import os
import selectors
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

# The start of a TLS ClientHello record that announces 512 bytes and sends 6 of them: the hub
# waits for the rest.
HALF_CLIENT_HELLO = bytes.fromhex("1603010200010001fc0303")


@dataclass
class StalledHandshakes:
    """``count`` connections to ``127.0.0.1:port`` from ``source`` (another loopback address, so
    that the hub's per-address cap tells them from the participants on 127.0.0.1). Every second
    one sends half a ClientHello, the others nothing."""

    port: int
    count: int
    source: str = "127.0.0.2"
    sockets: list[socket.socket] = field(default_factory=list)
    refused: int = 0
    """Connections the kernel refused outright (a full accept queue)."""
    opened_at: float = 0.0

    def open(self) -> StalledHandshakes:
        for i in range(self.count):
            sock = socket.socket()
            sock.settimeout(2)
            try:
                sock.bind((self.source, 0))
                sock.connect(("127.0.0.1", self.port))
                if i % 2:
                    sock.sendall(HALF_CLIENT_HELLO)
            except OSError:
                sock.close()
                self.refused += 1
                continue
            sock.setblocking(False)
            self.sockets.append(sock)
        self.opened_at = time.monotonic()
        return self

    def still_open(self) -> int:
        """How many the hub has not ended yet (EOF or reset seen on them are closed here)."""
        selector = selectors.DefaultSelector()
        for sock in self.sockets:
            selector.register(sock, selectors.EVENT_READ)
        ended = []
        for key, _ in selector.select(timeout=0):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            try:
                while sock.recv(4096):  # a TLS alert may come first: read up to the end
                    pass
            except BlockingIOError:
                continue  # data, but not the end yet
            except OSError:
                pass  # reset: ended
            ended.append(sock)
        selector.close()
        for sock in ended:
            self.sockets.remove(sock)
            sock.close()
        return len(self.sockets)

    def wait_closed(self, timeout: float) -> float | None:
        """Seconds from opening until the hub had ended every one, or None if some are still
        open after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while self.still_open():
            if time.monotonic() > deadline:
                return None
            time.sleep(0.1)
        return time.monotonic() - self.opened_at

    def close(self) -> None:
        for sock in self.sockets:
            with contextlib.suppress(OSError):
                sock.close()
        self.sockets.clear()


def descriptor_count(pid: int) -> int:
    """The open descriptors of a process, from /proc."""
    return len(os.listdir(Path(f"/proc/{pid}/fd")))
