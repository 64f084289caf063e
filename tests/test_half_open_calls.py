"""Half-open calls: a call that sends its headers but never its request message is admitted when
it starts (identity, revocation, its slot), not once a message arrives, and what it held comes
back when it closes."""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest
from cryptography.hazmat.primitives.serialization import Encoding
from spehub.v1 import delivery_pb2, directory_pb2

from hub import pki
from hub.client import secure_channel
from tests.support.hubs import TRUST_DOMAIN, make_participant, raw_channel, started_hub
from tests.support.idle_streams import pki_with_revoked_certificate
from tests.support.processes import HubProcess, hub_env

SN = "sn-anpej"
LIST = "/spehub.v1.DirectoryService/ListParticipants"
SUBSCRIBE = "/spehub.v1.DeliveryService/Subscribe"
WATCH = "/grpc.health.v1.Health/Watch"
LEFT_KIB = 20 * 1024  # what 2,000 refused half-open calls may leave behind (43 MB on the old code)


def _never(stop: threading.Event) -> Iterator[bytes]:
    """A request stream that sends nothing until ``stop`` (the call's headers go out alone)."""
    stop.wait(60)
    return
    yield b""  # a generator


def _headers_only_unary(channel: grpc.Channel, stop: threading.Event) -> grpc.Future:
    call = channel.stream_unary(LIST, request_serializer=None, response_deserializer=None)
    return call.future(_never(stop), timeout=30)


def _headers_only_subscribe(channel: grpc.Channel, stop: threading.Event) -> grpc.Call:
    call = channel.stream_stream(SUBSCRIBE, request_serializer=None, response_deserializer=None)
    return call(_never(stop), timeout=30)  # type: ignore[no-any-return]


def _code(future: grpc.Future, timeout: float) -> grpc.StatusCode | None:
    """The status a call ended with within ``timeout`` s, or None if it is still open."""
    try:
        future.result(timeout=timeout)
    except grpc.FutureTimeoutError:
        return None
    except grpc.RpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


def test_a_revoked_certificate_is_refused_when_its_call_starts(hub, test_pki):
    """No message is ever sent: on the old code the calls waited, unadmitted, for their deadline."""
    cert = pki.issue(test_pki.ca, SN, uris=(f"spiffe://{TRUST_DOMAIN}/participant/{SN}",))
    hub.admin.revoke_certificate(hashlib.sha256(cert.cert.public_bytes(Encoding.DER)).hexdigest(), "op-hub")
    stop = threading.Event()
    with secure_channel(f"127.0.0.1:{hub.port}", test_pki.ca_pem, cert.cert_pem, cert.key_pem) as channel:
        try:
            unary = _headers_only_unary(channel, stop)
            stream = _headers_only_subscribe(channel, stop)
            assert _code(unary, 15) == grpc.StatusCode.UNAUTHENTICATED
            with pytest.raises(grpc.RpcError) as err:
                next(stream)
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert "revoked" in err.value.details()
        finally:
            stop.set()


def test_headers_only_subscriptions_take_stream_slots(test_pki, database_url, clock):
    with started_hub(test_pki, database_url, clock, max_streams_per_participant=2) as running:
        sn = make_participant(running.port, test_pki, SN, clock, ("subscribe",))
        stop = threading.Event()
        try:
            held = [_headers_only_subscribe(sn.channel, stop) for _ in range(2)]
            for call in held:
                call.initial_metadata()  # the hub sends it once the stream holds its slot
            with pytest.raises(grpc.RpcError) as err:
                next(sn.delivery.Subscribe(delivery_pb2.SubscribeRequest(), timeout=10))
            assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "open streams" in err.value.details()
        finally:
            stop.set()
            sn.channel.close()


def test_unary_calls_waiting_for_their_message_are_bounded_per_participant(test_pki, database_url, clock):
    """Each unary call whose message has not come holds one of its caller's waiting places; the
    one past the limit is refused, and another participant is not affected."""
    with started_hub(test_pki, database_url, clock, max_waiting_calls_per_participant=2) as running:
        sn = make_participant(running.port, test_pki, SN, clock, ("directory",))
        stop = threading.Event()
        try:
            calls = [_headers_only_unary(sn.channel, stop) for _ in range(3)]
            deadline = time.monotonic() + 15
            codes: list[grpc.StatusCode | None] = [None] * 3
            while time.monotonic() < deadline and not any(codes):
                codes = [_code(c, 0.1) for c in calls]
            assert sorted(c.name for c in codes if c) == ["RESOURCE_EXHAUSTED"], codes
            assert codes.count(None) == 2  # the two others still wait for their message
            with raw_channel(running.port, test_pki, "ml-anpe") as ml:
                # ListParticipants needs a token: without one, the refusal proves it was admitted
                # and judged, not queued behind sn-anpej's calls.
                with pytest.raises(grpc.RpcError) as err:
                    ml.unary_unary(LIST)(
                        directory_pb2.ListParticipantsRequest().SerializeToString(), timeout=10
                    )
                assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        finally:
            stop.set()
            sn.channel.close()


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no RSS for process {pid}")


async def _half_open_crowd(port: int, root: Path, count: int) -> dict[str, int]:
    """``count`` headers-only ListParticipants calls from the revoked certificate, held for a
    moment, then closed: the status of each (OPEN for one still waiting at the end)."""
    cert = (root / "revoked" / "sn-anpej-cert.pem").read_bytes()
    key = (root / "revoked" / "sn-anpej-key.pem").read_bytes()
    creds = grpc.ssl_channel_credentials((root / "ca.pem").read_bytes(), key, cert)
    stop = asyncio.Event()

    async def nothing() -> AsyncIterator[bytes]:
        await stop.wait()
        return
        yield b""

    codes: dict[str, int] = {}
    async with grpc.aio.secure_channel(
        f"127.0.0.1:{port}", creds, options=(("grpc.ssl_target_name_override", "localhost"),)
    ) as channel:
        method = channel.stream_unary(LIST)
        calls = []
        for i in range(count):
            calls.append(method(nothing(), timeout=60))
            if i % 250 == 249:  # grpc core sheds (CANCELLED) calls arriving faster than it hands them out
                await asyncio.sleep(0.2)
        done, pending = await asyncio.wait([asyncio.ensure_future(c) for c in calls], timeout=5)
        for task in done:
            exc = task.exception()
            name = exc.code().name if isinstance(exc, grpc.aio.AioRpcError) else "OK"
            codes[name] = codes.get(name, 0) + 1
        codes["OPEN"] = len(pending)
        for call in calls:
            call.cancel()
        stop.set()
        await asyncio.gather(*pending, return_exceptions=True)
    return codes


@pytest.mark.processes
@pytest.mark.slow
def test_half_open_calls_of_a_revoked_certificate_leave_no_memory_behind(tmp_path: Path):
    """2,000 headers-only calls from a revoked certificate: all refused at once (none waits), and
    the hub's RSS comes back near where it was. On the old code they stayed open until closed,
    and most of what they took stayed after (the attack measured 122 → 552 → 467 MB at 19,500)."""
    root = pki_with_revoked_certificate(tmp_path / "pki", TRUST_DOMAIN)
    env = hub_env(
        root,
        f"sqlite:///{tmp_path / 'hub.sqlite3'}",
        f"sqlite:///{tmp_path / 'keys.sqlite3'}",
        TRUST_DOMAIN,
    )
    hub = HubProcess.start(env, tmp_path / "hub.log", tmp_path)
    try:
        asyncio.run(_half_open_crowd(hub.port, root, 50))  # warm up: the first calls' lasting allocations
        baseline = _rss_kib(hub.proc.pid)
        codes = asyncio.run(_half_open_crowd(hub.port, root, 2000))
        assert codes == {"UNAUTHENTICATED": 2000, "OPEN": 0}, codes
        # The hub gives freed heap back every 10 s (hub.api.connections): 2.6 MB was left when
        # measured (11 MB once, on a loaded machine), 43 MB on the old code. The bound tells those
        # apart with room for a busy machine's allocator; bench figures are in BENCHMARKS.md.
        deadline = time.monotonic() + 30
        while (grown := _rss_kib(hub.proc.pid) - baseline) >= LEFT_KIB and time.monotonic() < deadline:
            time.sleep(0.5)
        assert grown < LEFT_KIB, f"RSS grew by {grown} KiB after the calls closed"
    finally:
        assert hub.stop() == 0, hub.log.read_text()[-2000:]


def test_health_watches_are_bounded_by_stream_slots_not_waiting_places(test_pki, database_url, clock):
    """health Watch is a coroutine that writes a stream: like Subscribe, it holds a stream slot, which
    bounds its wait for its message. Taking a waiting place as well refused a participant's burst of
    Watches well under its stream limit (6 of 1,000 idle streams in tests/test_availability.py)."""
    with started_hub(
        test_pki, database_url, clock, max_waiting_calls_per_participant=2, max_streams_per_participant=4
    ) as running:
        stop = threading.Event()
        with raw_channel(running.port, test_pki, SN) as channel:
            watch = channel.stream_stream(WATCH, request_serializer=None, response_deserializer=None)
            try:
                held = [watch(_never(stop), timeout=30) for _ in range(4)]  # past 2 waiting places
                time.sleep(1)  # admitted when they start (their messages never come)
                with pytest.raises(grpc.RpcError) as err:  # the fifth: past the stream slots
                    next(watch(_never(stop), timeout=10))
                assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                # All four hold their slots; none was refused for want of a waiting place.
                assert "open streams" in err.value.details(), err.value.details()
                assert [call.done() for call in held] == [False] * 4
            finally:
                stop.set()
