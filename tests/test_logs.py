"""JSON log lines with the request id and the participant, and the request id returned to the caller."""

from __future__ import annotations

import io
import json
import logging

import grpc
import pytest
from spehub.v1 import pool_pb2

from hub import logs

FT = "fr-francetravail"


def test_a_refused_call_logs_one_json_line_with_its_request_id(connect):
    ft = connect(FT)
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(logs.ContextFilter())
    handler.setFormatter(logs.JsonFormatter())
    logger = logging.getLogger("spehub")
    logger.addHandler(handler)
    previous = logger.level
    logger.setLevel(logging.INFO)
    try:
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
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    refused = [line for line in lines if line["msg"] == "rpc refused"]
    assert refused and refused[0]["request_id"] == "counsellor-desk-7.42"
    assert refused[0]["participant"] == FT and refused[0]["code"] == "INVALID_ARGUMENT"
    assert refused[0]["rpc_method"] == "SearchProfiles" and refused[0]["level"] == "INFO"


def test_an_unsafe_request_id_is_replaced():
    assert logs.new_request_id("ok-id_1.2") == "ok-id_1.2"
    for bad in ("", "with space", "a" * 65, "x\nforged log line", "é"):
        assert logs.new_request_id(bad) != bad
