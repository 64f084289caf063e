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


def test_a_rate_limited_flood_logs_one_line_per_interval_with_its_count(
    test_pki, database_url, clock, json_log, monkeypatch
):
    """Issue 25, item 9: each refused call wrote its own line. Now one line per participant and
    interval says how many calls were refused since the last; the metric still counts each."""
    import time

    from hub.api import interceptor
    from tests.support.hubs import make_participant, started_hub

    monkeypatch.setattr(interceptor, "RATE_LIMITED_LOG_SECONDS", 1.0)
    # Three requests, then next to none: IssueToken and two searches pass, the rest are refused.
    with started_hub(test_pki, database_url, clock, rate_limit_per_second=0.01, rate_limit_burst=3) as hub:
        ft = make_participant(hub.port, test_pki, FT, clock)
        try:
            codes, began = [], time.monotonic()
            for _ in range(40):
                try:
                    ft.pool.SearchProfiles(pool_pb2.SearchProfilesRequest(), timeout=10)
                    codes.append(grpc.StatusCode.OK)
                except grpc.RpcError as err:
                    codes.append(err.code())
            flood, took = codes.count(grpc.StatusCode.RESOURCE_EXHAUSTED), time.monotonic() - began
            assert codes.count(grpc.StatusCode.OK) == 2 and flood == 38
            time.sleep(1.2)  # one interval later, the next refusal writes the second line
            with pytest.raises(grpc.RpcError) as err:
                ft.pool.SearchProfiles(pool_pb2.SearchProfilesRequest(), timeout=10)
            assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        finally:
            ft.channel.close()
        handled = hub.metrics.registry.get_sample_value(
            "grpc_server_handled_total",
            {
                "grpc_type": "unary",
                "grpc_service": "spehub.v1.PoolService",
                "grpc_method": "SearchProfiles",
                "grpc_code": "RESOURCE_EXHAUSTED",
            },
        )
        # Counted as the participant that was refused, so that the SpeHubRateLimited alert names it.
        assert handled == hub.metrics.registry.get_sample_value(
            "spehub_rpc_handled_total",
            {"participant": FT, "grpc_method": "SearchProfiles", "grpc_code": "RESOURCE_EXHAUSTED"},
        )
    lines = [line for line in json_log() if line.get("code") == "RESOURCE_EXHAUSTED"]
    # The first refusal writes a line at once; the one after the pause writes the count of all since
    # the line before it. So the counts add up to every refusal however long the flood took, and the
    # flood wrote one line per second it lasted at most (two when it takes well under a second).
    assert {line["participant"] for line in lines} == {FT} and lines[0]["refused"] == 1
    assert sum(line["refused"] for line in lines) == flood + 1 == handled
    assert 2 <= len(lines) <= 2 + int(took)
