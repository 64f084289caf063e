"""The one server interceptor: authentication, metrics and error translation around every handler.

A grpc server interceptor cannot see the TLS auth context, but the handler it
returns can: so this interceptor wraps each method handler, and the wrapper
identifies the caller from ``context.auth_context()`` before the servicer
runs. Methods of the spehub.v1 services require a registered participant;
health checking and reflection need only a certificate the TLS layer accepted.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import grpc

from hub.api.errors import status_for
from hub.api.identity import Authenticator, reset_caller, set_caller
from hub.errors import HubError
from hub.metrics import HubMetrics

log = logging.getLogger("spehub.rpc")

PROTECTED_PREFIX = "/spehub."


class HubInterceptor(grpc.ServerInterceptor):
    def __init__(self, authenticator: Authenticator, metrics: HubMetrics) -> None:
        self.authenticator = authenticator
        self.metrics = metrics

    def intercept_service(self, continuation: Callable[..., Any], details: grpc.HandlerCallDetails) -> Any:
        handler = continuation(details)
        if handler is None:
            return None
        method: str = details.method
        service, _, name = method.lstrip("/").rpartition("/")
        protected = method.startswith(PROTECTED_PREFIX)
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
        wrapped = wrap(behavior, labels, protected, handler.request_streaming)
        return factory(
            wrapped,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    def _begin(self, context: grpc.ServicerContext, labels: tuple[str, str, str], protected: bool) -> Any:
        """Count the start and, for protected methods, identify the caller (raises AuthenticationError)."""
        self.metrics.started.labels(*labels).inc()
        return self.authenticator.identify(context) if protected else None

    def _count_requests(self, request: Any, labels: tuple[str, str, str], streaming: bool) -> Any:
        if not streaming:
            return request
        counter = self.metrics.msg_received.labels(*labels)

        def counted() -> Iterator[Any]:
            for item in request:
                counter.inc()
                yield item

        return counted()

    def _finish(self, labels: tuple[str, str, str], started: float, code: grpc.StatusCode) -> None:
        self.metrics.handling.labels(*labels).observe(time.perf_counter() - started)
        self.metrics.handled.labels(*labels, code.name).inc()

    def _fail(self, context: grpc.ServicerContext, labels: tuple[str, str, str], exc: BaseException) -> None:
        """Translate an exception into the call's status (context.abort raises)."""
        if isinstance(exc, HubError):
            code = status_for(exc)
            log.info(
                "rpc refused", extra={"rpc_method": labels[2], "code": code.name, "error": type(exc).__name__}
            )
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
        self, behavior: Callable[..., Any], labels: tuple[str, str, str], protected: bool, req_streaming: bool
    ) -> Callable[..., Any]:
        def wrapper(request: Any, context: grpc.ServicerContext) -> Any:
            started = time.perf_counter()
            failed = False
            try:
                participant = self._begin(context, labels, protected)
                return _as_caller(
                    participant, behavior, self._count_requests(request, labels, req_streaming), context
                )
            except BaseException as exc:
                failed = True
                self._fail(context, labels, exc)
                raise
            finally:
                self._finish(labels, started, self._code(context, failed))

        return wrapper

    def _wrap_streaming(
        self, behavior: Callable[..., Any], labels: tuple[str, str, str], protected: bool, req_streaming: bool
    ) -> Callable[..., Any]:
        def wrapper(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            started = time.perf_counter()
            code: grpc.StatusCode | None = None
            failed = False
            sent = self.metrics.msg_sent.labels(*labels)
            try:
                participant = self._begin(context, labels, protected)
                responses = _as_caller(
                    participant,
                    lambda r, c: iter(behavior(r, c)),
                    self._count_requests(request, labels, req_streaming),
                    context,
                )
                while True:
                    # The servicer's generator body runs inside next(), maybe on
                    # another thread each time: set the caller around every step.
                    try:
                        item = _as_caller(participant, lambda it, _c: next(it), responses, context)
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
                self._finish(labels, started, code or self._code(context, failed))

        return wrapper


def _as_caller(participant: Any, fn: Callable[[Any, Any], Any], arg: Any, context: Any) -> Any:
    token = set_caller(participant) if participant is not None else None
    try:
        return fn(arg, context)
    finally:
        if token is not None:
            reset_caller(token)
