"""Caps on the connections one hub process holds: in total, and per source address.

grpc core caps a server's connections in total (``grpc.max_allowed_incoming_connections``: one
accepted past the cap is closed at once) and closes a connection whose TLS handshake and HTTP/2
preface take too long (``grpc.server_handshake_timeout_ms``), but it has no cap per source
address, and grpc's Python API has no hook where a connection is accepted. So a
``ConnectionGuard`` thread looks at the connections to the hub's port twice a second (the
kernel lists them with their peers through sock_diag, as for ``ss``) and, for an address holding
more than its cap, finds the process's descriptors of the ones it saw last beyond the cap
(``/proc/self/fd``) and shuts them down (``shutdown(2)`` on a duplicate of grpc's descriptor:
grpc sees the connection end and closes it). This is off the calls' path: a look takes 2.3 ms
idle and 7 ms with 578 connections, on the guard's thread, the GIL released while the kernel
lists (BENCHMARKS.md, "Connection floods and half-open calls").

The same thread gives the heap's free memory back to the system every ten seconds
(``malloc_trim``): glibc keeps what thousands of refused or closed calls and connections freed,
and without it the hub's RSS stays where a flood took it (measured: 2,000 refused half-open calls
left 12.5 MB, 2.6 MB with it; one trim takes well under a millisecond).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import ipaddress
import logging
import os
import resource
import socket
import struct
import threading
import time
from collections import defaultdict
from collections.abc import Callable

log = logging.getLogger("spehub.connections")

# Descriptors kept for what is not a connection: database pools, log and data files, grpc's own.
RESERVED_DESCRIPTORS = 256


def _malloc_trim() -> Callable[[], object] | None:
    """glibc's malloc_trim(0), or None where the C library has none (musl, other systems)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    return lambda: trim(0)


def connection_cap(configured: int, nofile: int | None = None) -> int:
    """The total connection cap: ``configured``, or else derived from the descriptor limit
    (three quarters of what is left after RESERVED_DESCRIPTORS, at least 16)."""
    if configured:
        return configured
    if nofile is None:
        nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        if nofile == resource.RLIM_INFINITY:
            nofile = 1 << 20
    return max(16, (nofile - RESERVED_DESCRIPTORS) * 3 // 4)


_NETLINK_SOCK_DIAG = 4
_SOCK_DIAG_BY_FAMILY = 20
_NLMSG_ERROR, _NLMSG_DONE = 2, 3
_DUMP_REQUEST = 0x301  # NLM_F_REQUEST | NLM_F_DUMP
_BYTECODE = 1  # INET_DIAG_REQ_BYTECODE
_S_GE, _S_LE = 2, 3  # INET_DIAG_BC_S_GE, INET_DIAG_BC_S_LE
# ESTABLISHED (1) only: a connection the peer has closed (CLOSE_WAIT and the other closing states)
# is on its way out as grpc reads its end, and counting it cut live connections of an address that
# had just closed many (a test suite's channels, a gateway's restart). LISTEN, TIME_WAIT and
# SYN_RECV hold no descriptor. A stalled handshake is ESTABLISHED: the kernel completed it.
_STATES = 1 << 1


def _diag_request(port: int, family: int) -> bytes:
    """A sock_diag dump request (linux/inet_diag.h) for the TCP sockets of ``family`` whose local
    port is ``port``: the kernel filters by port (source port >= port and <= port)."""
    reject = 20  # the filter's length + 4: jumping there refuses the socket
    bytecode = struct.pack("=BBHBBHBBHBBH", _S_GE, 8, reject, 0, 0, port, _S_LE, 8, reject - 8, 0, 0, port)
    attribute = struct.pack("=HH", 4 + len(bytecode), _BYTECODE) + bytecode
    request = struct.pack("=BBBBI", family, socket.IPPROTO_TCP, 0, 0, _STATES) + bytes(48) + attribute
    return struct.pack("=IHHII", 16 + len(request), _SOCK_DIAG_BY_FAMILY, _DUMP_REQUEST, 1, 0) + request


def peers(port: int) -> dict[int, str]:
    """The socket inode and peer address of every TCP connection whose local port is ``port``
    (of any process of the network namespace; the caller keeps its own), from the kernel's
    sock_diag netlink interface (``ss`` uses it; /proc/net/tcp took four times as long).
    IPv4-mapped IPv6 peers are given as IPv4. Raises OSError where there is no sock_diag."""
    found: dict[int, str] = {}
    with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, _NETLINK_SOCK_DIAG) as nl:
        for family in (socket.AF_INET, socket.AF_INET6):
            nl.send(_diag_request(port, family))
            while not _read_diag(nl.recv(1 << 20), found):
                pass
    return found


def _read_diag(data: bytes, found: dict[int, str]) -> bool:
    """Add one netlink read's sockets (struct inet_diag_msg) to ``found``; True at the dump's end."""
    offset = 0
    while offset < len(data):
        length, kind = struct.unpack_from("=IH", data, offset)
        if kind == _NLMSG_DONE:
            return True
        if kind == _NLMSG_ERROR:
            (errno,) = struct.unpack_from("=i", data, offset + 16)
            raise OSError(-errno, "sock_diag refused the request")
        body = offset + 16
        family = data[body]
        peer = data[body + 24 : body + 40]  # inet_diag_sockid.idiag_dst
        (inode,) = struct.unpack_from("=I", data, body + 68)
        if not inode:  # closed by its process, still ending in the kernel
            pass
        elif family == socket.AF_INET:
            found[inode] = socket.inet_ntop(socket.AF_INET, peer[:4])
        else:
            address = ipaddress.IPv6Address(peer)
            found[inode] = str(address.ipv4_mapped or address)
        offset += (length + 3) & ~3
    return False


def own_sockets(wanted: set[int]) -> dict[int, int]:
    """The descriptors of this process that are the sockets ``wanted`` (by inode): {inode: fd}.
    Looks from the highest descriptor down, and stops once it has found them all."""
    found: dict[int, int] = {}
    for fd in sorted((int(n) for n in os.listdir("/proc/self/fd")), reverse=True):
        with contextlib.suppress(OSError):  # closed meanwhile
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith("socket:[") and int(target[8:-1]) in wanted:
                found[int(target[8:-1])] = fd
                if len(found) == len(wanted):
                    break
    return found


def shut_down(fd: int, inode: int) -> bool:
    """End the connection of descriptor ``fd`` if it is still socket ``inode``: shutdown(2) on a
    duplicate, so that grpc, which owns ``fd``, sees it end and closes it."""
    try:
        dup = os.dup(fd)
    except OSError:
        return False  # closed since it was listed
    try:
        if os.fstat(dup).st_ino != inode:  # the number was reused by another descriptor
            return False
        with socket.socket(fileno=dup) as sock:  # closes the duplicate, not grpc's descriptor
            dup = -1
            sock.shutdown(socket.SHUT_RDWR)
        return True
    except OSError:
        return False  # ended meanwhile
    finally:
        if dup >= 0:
            os.close(dup)


class ConnectionGuard:
    """Keeps each source address to at most ``per_address`` connections to ``port`` in this
    process (0: no cap), and trims the heap every ``trim_seconds``."""

    def __init__(
        self,
        port: int,
        per_address: int,
        interval: float = 0.5,
        trim_seconds: float = 10.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.port = port
        self.per_address = per_address
        self.interval = interval
        self.trim_seconds = trim_seconds
        self.monotonic = monotonic
        self._trim = _malloc_trim()
        self._first_seen: dict[int, tuple[float, int]] = {}
        self._seen = 0
        self._shut: set[int] = set()
        self._owner: dict[int, int | None] = {}  # inode: this process's descriptor, None if another's
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="connection-guard", daemon=True)
        self.closed = 0
        """Connections shut down so far (for tests and the bench)."""

    def start(self) -> ConnectionGuard:
        if self.per_address:
            try:
                peers(self.port)
            except OSError as exc:  # not Linux, or no sock_diag in this kernel
                log.warning("connections are not capped per source address here (%s)", exc)
                self.per_address = 0
        if self.per_address or self._trim is not None:
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        last_trim = self.monotonic()
        while not self._stop.wait(self.interval):
            try:
                if self.per_address:
                    self.check()
                if self._trim is not None and self.monotonic() - last_trim >= self.trim_seconds:
                    self._trim()
                    last_trim = self.monotonic()
            except Exception:  # never let the guard die; the next look tries again
                log.exception("the connection guard's look at the connections failed")

    def check(self) -> int:
        """One look: shut down the newest connections of every address beyond its cap. Returns
        how many were shut down."""
        connections = peers(self.port)
        now = self.monotonic()
        for inode in connections:
            if inode not in self._first_seen:
                self._seen += 1  # ties within one look: the order they were listed in
                self._first_seen[inode] = (now, self._seen)
        for inode in set(self._first_seen) - set(connections):
            del self._first_seen[inode]
            self._owner.pop(inode, None)
        self._shut &= connections.keys()
        by_address: dict[str, list[int]] = defaultdict(list)
        for inode, address in connections.items():
            if inode not in self._shut:  # shut down already, until grpc closes it
                by_address[address].append(inode)
        over = {a: inodes for a, inodes in by_address.items() if len(inodes) > self.per_address}
        if not over:
            return 0
        # The listing has every process's connections (several serving processes share the port):
        # each cuts its own beyond the cap. Which are its own is looked up once per connection.
        unknown = {i for inodes in over.values() for i in inodes if i not in self._owner}
        if unknown:
            found = own_sockets(unknown)
            self._owner.update((i, found.get(i)) for i in unknown)
        closed = 0
        for inodes in over.values():
            own = sorted((i for i in inodes if self._owner[i] is not None), key=self._first_seen.__getitem__)
            for inode in own[self.per_address :]:
                fd = self._owner[inode]
                if fd is not None and shut_down(fd, inode):
                    self._shut.add(inode)
                    closed += 1
        if closed:
            self.closed += closed
            # Counts only: a source address may be personal data (docs/operations.md says where to see it).
            log.warning(
                "closed %d connections of %d source addresses over SPEHUB_MAX_CONNECTIONS_PER_ADDRESS (%d)",
                closed,
                len(over),
                self.per_address,
            )
        return closed
