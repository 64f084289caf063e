"""The one server interceptor: authentication, metrics and error translation around every handler.

A grpc server interceptor cannot see the TLS auth context, but the handler it
returns can: so this interceptor wraps each method handler, and the wrapper
identifies the caller from ``context.auth_context()`` before the servicer
runs. Methods of the spehub.v1 services require a registered participant;
health checking and reflection need only a certificate the TLS layer accepted.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import grpc

from hub import logs
from hub.api.errors import status_for
from hub.api.identity import Authenticator, Caller, reset_caller, set_caller
from hub.errors import HubError, InvalidRequestError, RateLimitedError, StoreUnavailableError
from hub.metrics import HubMetrics
from hub.services.limits import ParticipantLimits

log = logging.getLogger("spehub.rpc")

PROTECTED_PREFIX = "/spehub."


class HubInterceptor(grpc.ServerInterceptor):
    def __init__(self, authenticator: Authenticator, metrics: HubMetrics, limits: ParticipantLimits) -> None:
        self.authenticator = authenticator
        self.metrics = metrics
        self.limits = limits

    def intercept_service(self, continuation: Callable[..., Any], details: grpc.HandlerCallDetails) -> Any:
        handler = continuation(details)
        if handler is None:
            return None
        method: str = details.method
        service, _, name = method.lstrip("/").rpartition("/")
        protected = method.startswith(PROTECTED_PREFIX)  # every spehub method: authorised, rate-limited
        if handler.request_streaming and handler.response_streaming:
            grpc_type, behavior, factory = (
                "bidi_stream",
                handler.stream_stream,
                grpc.stream_stream_rpc_method_handler,
            )
        elif handler.request_streaming:
            grpc_type, behavior, factory = (
                "client_stream",
                handler.stream_unary,
                grpc.stream_unary_rpc_method_handler,
            )
        elif handler.response_streaming:
            grpc_type, behavior, factory = (
                "server_stream",
                handler.unary_stream,
                grpc.unary_stream_rpc_method_handler,
            )
        else:
            grpc_type, behavior, factory = "unary", handler.unary_unary, grpc.unary_unary_rpc_method_handler
        labels = (grpc_type, service, name)
        wrap = self._wrap_streaming if handler.response_streaming else self._wrap_unary
        wrapped = wrap(behavior, labels, method if protected else None, handler.request_streaming)
        return factory(
            wrapped,
            request_deserializer=_tolerant(handler.request_deserializer),
            response_serializer=handler.response_serializer,
        )

    def _begin(
        self, context: grpc.ServicerContext, labels: tuple[str, str, str], method: str | None
    ) -> Caller | None:
        """Count the start; for spehub methods, authorise the caller and take one request of its rate."""
        self.metrics.started.labels(*labels).inc()
        offered = dict(context.invocation_metadata() or ()).get("x-request-id", "")
        rid = logs.new_request_id(str(offered))
        logs.request_id.set(rid)
        logs.participant.set("")
        if method is None:
            return None
        caller = self.authenticator.authorize(context, method)
        logs.participant.set(caller.participant.id)
        self.limits.admit(caller.participant.id)
        return caller

    def _requests(
        self, request: Any, labels: tuple[str, str, str], streaming: bool, caller: Caller | None
    ) -> Any:
        """Count streamed request messages; each one after the first also takes one request of the rate.

        A request that did not parse is refused here, after authorisation (INVALID_ARGUMENT)."""
        if not streaming:
            _refuse_malformed(request, labels[2])
            return request
        counter = self.metrics.msg_received.labels(*labels)

        def counted() -> Iterator[Any]:
            for i, item in enumerate(request):
                counter.inc()
                if caller is not None and i:
                    self.limits.admit(caller.participant.id)
                _refuse_malformed(item, labels[2])
                yield item

        return counted()

    def _finish(
        self,
        labels: tuple[str, str, str],
        started: float,
        code: grpc.StatusCode,
        caller: Caller | None,
        method: str | None,
    ) -> None:
        self.metrics.handling.labels(*labels).observe(time.perf_counter() - started)
        self.metrics.handled.labels(*labels, code.name).inc()
        if method is not None:  # spehub methods: by participant (an id, never a person)
            who = caller.participant.id if caller is not None else "unauthenticated"
            self.metrics.by_participant.labels(who, labels[2], code.name).inc()

    def _fail(self, context: grpc.ServicerContext, labels: tuple[str, str, str], exc: BaseException) -> None:
        """Translate an exception into the call's status (context.abort raises)."""
        if isinstance(exc, HubError):
            code = status_for(exc)
            if isinstance(exc, RateLimitedError):
                context.set_trailing_metadata((("retry-after-ms", str(int(exc.retry_after * 1000) + 1)),))
            extra = {"rpc_method": labels[2], "code": code.name, "error": type(exc).__name__}
            if isinstance(exc, StoreUnavailableError):  # the operator's concern, not the caller's
                log.warning("store unavailable: %s", exc, extra=extra)
            else:
                log.info("rpc refused", extra=extra)
            context.abort(code, str(exc))
        if context.code() is not None:  # the servicer aborted on purpose
            raise exc
        incident = uuid.uuid4().hex[:12]
        log.error("internal error %s in %s", incident, labels[2], exc_info=exc)
        context.abort(
            grpc.StatusCode.INTERNAL, f"internal error (incident {incident}); the operator can look it up"
        )

    @staticmethod
    def _code(context: grpc.ServicerContext, failed: bool) -> grpc.StatusCode:
        code = context.code()
        if isinstance(code, grpc.StatusCode):
            return code
        return grpc.StatusCode.UNKNOWN if failed else grpc.StatusCode.OK

    def _wrap_unary(
        self,
        behavior: Callable[..., Any],
        labels: tuple[str, str, str],
        method: str | None,
        req_streaming: bool,
    ) -> Callable[..., Any]:
        def wrapper(request: Any, context: grpc.ServicerContext) -> Any:
            started = time.perf_counter()
            failed = False
            caller: Caller | None = None
            try:
                caller = self._begin(context, labels, method)
                requests = self._requests(request, labels, req_streaming, caller)
                _announce(context)
                if caller is not None and req_streaming:
                    with self.limits.stream(caller.participant.id):
                        return _as_caller(caller, behavior, requests, context)
                return _as_caller(caller, behavior, requests, context)
            except BaseException as exc:
                failed = True
                self._fail(context, labels, exc)
                raise
            finally:
                self._finish(labels, started, self._code(context, failed), caller, method)

        return wrapper

    def _wrap_streaming(
        self,
        behavior: Callable[..., Any],
        labels: tuple[str, str, str],
        method: str | None,
        req_streaming: bool,
    ) -> Callable[..., Any]:
        def wrapper(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            started = time.perf_counter()
            code: grpc.StatusCode | None = None
            failed = False
            caller: Caller | None = None
            sent = self.metrics.msg_sent.labels(*labels)
            try:
                caller = self._begin(context, labels, method)
                slot = (
                    self.limits.stream(caller.participant.id)
                    if caller is not None
                    else contextlib.nullcontext()
                )
                with slot:
                    # Sent once the call holds its stream slot: the client then knows it is open.
                    _announce(context)
                    responses = _as_caller(
                        caller,
                        lambda r, c: iter(behavior(r, c)),
                        self._requests(request, labels, req_streaming, caller),
                        context,
                    )
                    while True:
                        # The servicer's generator body runs inside next(), maybe on
                        # another thread each time: set the caller around every step.
                        try:
                            item = _as_caller(caller, lambda it, _c: next(it), responses, context)
                        except StopIteration:
                            break
                        sent.inc()
                        yield item
            except GeneratorExit:
                code = grpc.StatusCode.CANCELLED
                raise
            except BaseException as exc:
                failed = True
                self._fail(context, labels, exc)
                raise
            finally:
                self._finish(labels, started, code or self._code(context, failed), caller, method)

        return wrapper


def _announce(context: grpc.ServicerContext) -> None:
    """Send the initial metadata now, with the call's request id."""
    context.send_initial_metadata((("x-request-id", logs.request_id.get()),))


class _Malformed:
    """Stands for request bytes that do not parse, so that the refusal is ours (INVALID_ARGUMENT)
    rather than grpc's INTERNAL "Exception deserializing request!"."""


MALFORMED = _Malformed()


def _tolerant(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserializer is None:
        return None

    def parse(data: bytes) -> Any:
        try:
            return deserializer(data)
        except Exception:  # DecodeError, or anything the generated parser raises on bad bytes
            return MALFORMED

    return parse


def _refuse_malformed(request: Any, method: str) -> None:
    if request is MALFORMED:
        raise InvalidRequestError(f"the {method} request is not a valid protobuf message of its type")


def _as_caller(caller: Caller | None, fn: Callable[[Any, Any], Any], arg: Any, context: Any) -> Any:
    token = set_caller(caller) if caller is not None else None
    try:
        return fn(arg, context)
    finally:
        if token is not None:
            reset_caller(token)
