"""Random and truncated protobuf bytes on every RPC: the status each request must get (INVALID_ARGUMENT
for bytes that are no request, after authorisation), never INTERNAL, nothing leaked."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf.message import DecodeError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from spehub.v1 import exchange_pb2, pool_pb2

from hub.api.scopes import METHOD_SCOPES
from tests.support.hubs import make_participant

SN = "sn-anpej"
STREAMING_REQUESTS = {"/spehub.v1.ExchangeService/Publish"}
# What a request that parses may get, depending on what it asks (it is a well-formed request).
PARSED = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.OK,
}
REQUESTS = {
    "/spehub.v1.ExchangeService/Publish": exchange_pb2.PublishRequest,
    "/spehub.v1.PoolService/SearchProfiles": pool_pb2.SearchProfilesRequest,
    "/spehub.v1.PoolService/MatchCandidates": pool_pb2.MatchCandidatesRequest,
}


@pytest.fixture
def sn(hub, test_pki, clock):
    participant = make_participant(hub.port, test_pki, SN, clock)
    yield participant
    participant.channel.close()


def _call(channel, method, payload, timeout=10):
    identity = lambda b: b  # noqa: E731 (send the bytes as they are)
    try:
        if method in STREAMING_REQUESTS:
            list(
                channel.stream_stream(method, request_serializer=identity, response_deserializer=identity)(
                    iter([payload]), timeout=timeout
                )
            )
        elif method.endswith("/Subscribe"):
            list(
                channel.unary_stream(method, request_serializer=identity, response_deserializer=identity)(
                    payload, timeout=timeout
                )
            )
        else:
            channel.unary_unary(method, request_serializer=identity, response_deserializer=identity)(
                payload, timeout=timeout
            )
        return grpc.StatusCode.OK, ""
    except grpc.RpcError as exc:
        return exc.code(), exc.details() or ""


def _clean(details):
    assert "Traceback" not in details and 'File "' not in details


def _parses(method, data):
    try:
        REQUESTS[method].FromString(data)
    except DecodeError:
        return False
    return True


def _check(method, data, code, details):
    """Bytes that are no request get INVALID_ARGUMENT; a request that parses gets an answer to
    what it asks, never INTERNAL or UNKNOWN."""
    _clean(details)
    if _parses(method, data):
        assert code in PARSED, (method, code, details)
    else:
        assert code == grpc.StatusCode.INVALID_ARGUMENT, (method, code, details)


GARBAGE = [b"\xff", b"\x0a\xff\xff\xff\xff\x0f", b"\x08" * 3, b"\x12\x05abc", bytes(range(256))]


@pytest.mark.parametrize(
    "method", sorted(m for m in METHOD_SCOPES if m != "/spehub.v1.DirectoryService/IssueToken")
)
def test_garbage_on_every_rpc_is_refused_cleanly(sn, method):
    """Authorisation comes first: a method the caller has no scope or role for is
    PERMISSION_DENIED whatever the bytes (as an empty request shows); any other method refuses
    bytes that are no request with INVALID_ARGUMENT."""
    # An empty message is a valid request of most methods: a Subscribe would wait for deliveries
    # until its deadline, and a refusal comes at once.
    empty, _ = _call(sn.channel, method, b"", timeout=2)
    expected = (
        grpc.StatusCode.PERMISSION_DENIED
        if empty == grpc.StatusCode.PERMISSION_DENIED
        else grpc.StatusCode.INVALID_ARGUMENT
    )
    for payload in GARBAGE:
        code, details = _call(sn.channel, method, payload)
        _clean(details)
        assert code == expected, (method, payload, code, details)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=300))
def test_random_bytes_to_publish_and_search(sn, data):
    for method in (
        "/spehub.v1.ExchangeService/Publish",
        "/spehub.v1.PoolService/SearchProfiles",
        "/spehub.v1.PoolService/MatchCandidates",
    ):
        _check(method, data, *_call(sn.channel, method, data))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.integers(min_value=1, max_value=400))
def test_truncated_requests(sn, cut):
    search = pool_pb2.SearchProfilesRequest(isco08_codes=["9211"], destination_country_code="FR", page_size=5)
    publish = exchange_pb2.PublishRequest(request_id="x" * 40)
    for method, message in (
        ("/spehub.v1.PoolService/SearchProfiles", search),
        ("/spehub.v1.ExchangeService/Publish", publish),
    ):
        raw = message.SerializeToString()
        cut_bytes = raw[: max(0, len(raw) - cut % max(1, len(raw)))]
        _check(method, cut_bytes, *_call(sn.channel, method, cut_bytes))
