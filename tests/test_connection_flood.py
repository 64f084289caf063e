"""Connection floods: connections that never finish their TLS handshake are capped in total and
per source address, below the hub's descriptor limit, and closed after the handshake timeout;
a registered participant is served meanwhile."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import pytest
from spehub.v1 import delivery_pb2, directory_pb2, directory_pb2_grpc

from hub import pki
from hub.api.connections import ConnectionGuard, connection_cap, peers
from hub.api.server import ConnectionLimits
from hub.client import secure_channel
from tests.support.hubs import make_participant, started_hub
from tests.support.processes import HubProcess, hub_env
from tests.support.stalled_handshakes import StalledHandshakes, descriptor_count

TRUST_DOMAIN = "flood.spehub.invalid"
SN = "sn-anpej"
LIST = "/spehub.v1.DirectoryService/ListParticipants"
NOFILE = 1024


def test_the_total_cap_is_derived_from_the_descriptor_limit_and_stays_below_it():
    assert connection_cap(0, nofile=1024) == 576
    assert connection_cap(0, nofile=20_000) == 14_808
    assert connection_cap(0, nofile=300) == 33
    assert connection_cap(5000, nofile=1024) == 5000  # as configured
    options = dict(ConnectionLimits(total=700, handshake_timeout_seconds=7, idle_seconds=0).options())
    assert options == {"grpc.max_allowed_incoming_connections": 700, "grpc.server_handshake_timeout_ms": 7000}
    assert "grpc.max_connection_age_ms" not in dict(ConnectionLimits().options())  # streams live on


def test_peers_of_a_dual_stack_port_are_read_with_their_addresses():
    """IPv4 clients of an IPv6 listener are IPv4-mapped: they count as their IPv4 address."""
    import socket

    try:
        listener = socket.socket(socket.AF_INET6)
        listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        listener.bind(("::", 0))
    except OSError:
        pytest.skip("no IPv6 on this host")
    listener.listen(4)
    port = listener.getsockname()[1]
    clients = []
    try:
        for family, source, target in (
            (socket.AF_INET, "127.0.0.4", "127.0.0.1"),
            (socket.AF_INET6, "::1", "::1"),
        ):
            c = socket.socket(family)
            c.bind((source, 0))
            c.connect((target, port))
            clients += [c, listener.accept()[0]]
        assert sorted(peers(port).values()) == ["127.0.0.4", "::1"]
    finally:
        for s in (*clients, listener):
            s.close()


@contextmanager
def _five_connections() -> Iterator[tuple[ConnectionGuard, list[socket.socket], list[socket.socket]]]:
    """A listening socket of this process and 5 connections to it from 127.0.0.3, each seen by a
    guard (cap 5, so far) as it came: (guard, client ends, accepted ends), closed at the end."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    port = listener.getsockname()[1]
    clients: list[socket.socket] = []
    accepted: list[socket.socket] = []
    guard = ConnectionGuard(port, per_address=5)
    try:
        for _ in range(5):
            c = socket.socket()
            c.bind(("127.0.0.3", 0))
            c.connect(("127.0.0.1", port))
            clients.append(c)
            accepted.append(listener.accept()[0])
            assert guard.check() == 0  # within the cap; the guard sees them in the order they came
        assert sorted(peers(port).values()) == ["127.0.0.3"] * 5
        yield guard, clients, accepted
    finally:
        for s in (*clients, *accepted, listener):
            s.close()


def _open(client: socket.socket) -> bool:
    """Whether the other end of ``client`` is still open (nothing to read yet), or ended."""
    client.setblocking(False)
    try:
        client.recv(1)
    except BlockingIOError:
        return True
    return False


def test_the_guard_shuts_down_the_newest_connections_of_an_address_over_its_cap():
    with _five_connections() as (guard, clients, _):
        guard.per_address = 2
        assert guard.check() == 3
        time.sleep(0.2)  # the FIN on loopback
        assert [_open(c) for c in clients] == [True, True, False, False, False]  # the two oldest kept
        assert guard.check() == 0


def test_each_process_cuts_only_its_own_connections():
    """Serving processes share the port: the listing has all of them, and a process shuts down
    its own connections beyond the cap, never another's. Here a child process holds 3 of
    127.0.0.3's 5 connections and this one 2; with a cap of 1, this process cuts 1 of its own."""
    with _five_connections() as (guard, clients, accepted):
        given = accepted[:3]
        child = subprocess.Popen(
            [sys.executable, "-c", "import time; time.sleep(60)"], pass_fds=[s.fileno() for s in given]
        )
        try:
            for s in given:
                s.close()  # the child's now
            guard.per_address = 2
            assert guard.check() == 0  # this process holds 2, within the cap
            guard.per_address = 1
            assert guard.check() == 1
            time.sleep(0.2)
            # The child's three and this process's oldest stay; this process's newest ends.
            assert [_open(c) for c in clients] == [True, True, True, True, False]
        finally:
            child.kill()
            child.wait()


def _states(channel: grpc.Channel) -> list[grpc.ChannelConnectivity]:
    """The connectivity states ``channel`` goes through from now on (a list that grows)."""
    seen: list[grpc.ChannelConnectivity] = []
    channel.subscribe(seen.append, try_to_connect=False)
    return seen


def test_an_idle_connection_is_closed_and_one_with_an_open_stream_is_not(test_pki, database_url, clock):
    """SPEHUB_CONNECTION_IDLE_SECONDS=1: a connection with no call open gets a GOAWAY (its
    channel goes IDLE, the next call reconnects); one holding a Subscribe stream stays READY."""
    with started_hub(test_pki, database_url, clock, connection_idle_seconds=1) as running:
        idle = make_participant(running.port, test_pki, SN, clock, ("directory",))
        busy = make_participant(running.port, test_pki, "ml-anpe", clock, ("subscribe",))
        try:
            idle.channel.unary_unary(LIST)(b"", timeout=10)
            stream = busy.delivery.Subscribe(delivery_pb2.SubscribeRequest(), timeout=30)
            stream.initial_metadata()
            idle_states, busy_states = _states(idle.channel), _states(busy.channel)
            deadline = time.monotonic() + 15
            while grpc.ChannelConnectivity.IDLE not in idle_states and time.monotonic() < deadline:
                time.sleep(0.1)
            assert grpc.ChannelConnectivity.IDLE in idle_states, idle_states
            time.sleep(2)  # twice the idle time more: the stream's connection is still in use
            assert busy_states[-1] == grpc.ChannelConnectivity.READY, busy_states
            assert grpc.ChannelConnectivity.IDLE not in busy_states
            idle.channel.unary_unary(LIST)(b"", timeout=10)  # reconnects for the next call
            stream.cancel()
        finally:
            idle.channel.close()
            busy.channel.close()


def _issue_token(port: int, root: Path, timeout: float) -> str:
    folder = root / "participants" / "sn-anpej"
    with secure_channel(
        f"127.0.0.1:{port}",
        (root / "ca.pem").read_bytes(),
        (folder / "client.pem").read_bytes(),
        (folder / "client-key.pem").read_bytes(),
    ) as channel:
        response = directory_pb2_grpc.DirectoryServiceStub(channel).IssueToken(
            directory_pb2.IssueTokenRequest(scopes=["directory"]), timeout=timeout, wait_for_ready=True
        )
    return str(response.access_token)


@pytest.mark.processes
@pytest.mark.slow
def test_two_thousand_stalled_handshakes_leave_a_participant_served_and_are_closed(tmp_path: Path):
    """The hub at a descriptor limit of 1,024 (a 576-connection cap, 64 per address, handshakes
    closed after 20 s): 2,000 stalled handshakes from 127.0.0.2. On the old code the descriptors
    ran out, the participant's call waited for its deadline and nothing was closed for 120 s."""
    root = tmp_path / "pki"
    pki.generate_dev_pki(root, trust_domain=TRUST_DOMAIN)
    env = hub_env(
        root,
        f"sqlite:///{tmp_path / 'hub.sqlite3'}",
        f"sqlite:///{tmp_path / 'keys.sqlite3'}",
        TRUST_DOMAIN,
        SPEHUB_HANDSHAKE_TIMEOUT_SECONDS="20",
    )
    hub = HubProcess.start(env, tmp_path / "hub.log", tmp_path, nofile=NOFILE)
    flood = StalledHandshakes(hub.port, 2000)
    try:
        flood.open()
        assert flood.refused < 1000, f"the kernel refused {flood.refused} connections"
        assert _issue_token(hub.port, root, timeout=15)  # served while the flood is on
        assert descriptor_count(hub.proc.pid) < NOFILE
        # The per-address cap: within a second or so (well before the 20 s handshake timeout), only
        # 64 of 127.0.0.2's connections are left, waiting for their timeout.
        deadline = time.monotonic() + 15
        while (left := flood.still_open()) > 64 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert 0 < left <= 64
        took = flood.wait_closed(timeout=90)
        assert took is not None, f"{flood.still_open()} stalled connections still open after 90 s"
        assert _issue_token(hub.port, root, timeout=15)
    finally:
        flood.close()
        assert hub.stop() == 0, hub.log.read_text()[-2000:]
    assert "File descriptor limit reached" not in hub.log.read_text()
