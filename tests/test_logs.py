"""JSON log lines with the request id and the participant, and the request id returned to the caller."""

from __future__ import annotations

import io
import json
import logging

import grpc
import pytest
from spehub.v1 import pool_pb2, pool_pb2_grpc

from hub import logs
from tests.support.hubs import raw_channel

FT = "fr-francetravail"


@pytest.fixture
def json_log():
    """The hub's log lines at INFO and above, as parsed JSON, once the test has run its calls."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(logs.ContextFilter())
    handler.setFormatter(logs.JsonFormatter())
    logger = logging.getLogger("spehub")
    logger.addHandler(handler)
    previous = logger.level
    logger.setLevel(logging.INFO)
    try:
        yield lambda: [json.loads(line) for line in out.getvalue().splitlines()]
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)


def test_a_refused_call_logs_one_json_line_with_its_request_id(connect, json_log):
    ft = connect(FT)
    call = ft.pool.SearchProfiles.with_call
    with pytest.raises(grpc.RpcError) as err:
        call(
            pool_pb2.SearchProfilesRequest(page_token="not-a-token"),
            metadata=(("x-request-id", "counsellor-desk-7.42"),),
            timeout=10,
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert ("x-request-id", "counsellor-desk-7.42") in err.value.initial_metadata()
    _, call_info = ft.pool.SearchProfiles.with_call(pool_pb2.SearchProfilesRequest(), timeout=10)
    fresh = dict(call_info.initial_metadata())["x-request-id"]
    assert len(fresh) == 16 and fresh != "counsellor-desk-7.42"  # a new id when none was offered
    refused = [line for line in json_log() if line["msg"] == "rpc refused"]
    assert refused and refused[0]["request_id"] == "counsellor-desk-7.42"
    assert refused[0]["participant"] == FT and refused[0]["code"] == "INVALID_ARGUMENT"
    assert refused[0]["rpc_method"] == "SearchProfiles" and refused[0]["level"] == "INFO"


def test_a_call_refused_at_admission_logs_its_request_id_and_gets_no_metadata_echo(hub, test_pki, json_log):
    """No token: refused before the method runs (on a worker thread), logged with the request id it
    offered and no participant; a caller that is not admitted is not told anything else."""
    channel = raw_channel(hub.port, test_pki, FT)
    try:
        with pytest.raises(grpc.RpcError) as err:
            pool_pb2_grpc.PoolServiceStub(channel).SearchProfiles(
                pool_pb2.SearchProfilesRequest(), metadata=(("x-request-id", "desk-9.1"),), timeout=10
            )
    finally:
        channel.close()
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "x-request-id" not in dict(err.value.initial_metadata())
    refused = [line for line in json_log() if line["msg"] == "rpc refused"]
    assert len(refused) == 1 and refused[0]["request_id"] == "desk-9.1"
    assert refused[0]["code"] == "UNAUTHENTICATED" and not refused[0].get("participant")


def test_calls_at_once_each_get_their_own_request_id(connect):
    """Unary calls run on worker threads while their metadata goes out from the event loop: each
    call's id is its own, under concurrency."""
    from concurrent.futures import ThreadPoolExecutor

    ft = connect(FT)

    def call(i: int) -> str:
        _, info = ft.pool.SearchProfiles.with_call(
            pool_pb2.SearchProfilesRequest(), metadata=(("x-request-id", f"desk-{i}"),), timeout=10
        )
        return dict(info.initial_metadata())["x-request-id"]

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(call, range(40))) == [f"desk-{i}" for i in range(40)]


def test_an_unsafe_request_id_is_replaced():
    assert logs.new_request_id("ok-id_1.2") == "ok-id_1.2"
    for bad in ("", "with space", "a" * 65, "x\nforged log line", "é"):
        assert logs.new_request_id(bad) != bad
