"""The one server interceptor: authentication, limits, metrics and error translation around every handler.

The hub runs on the ``grpc.aio`` server. Unary methods are plain functions that
run on the server's thread pool; streaming methods (Publish, Subscribe, health
Watch, reflection) are coroutines on the event loop, so an idle stream costs no
thread. This interceptor wraps each method handler in a coroutine that admits
the call and runs the method where it belongs (wrap_sync_unary hands a unary
method to the thread pool itself); the wrapper identifies the caller from
``context.auth_context()`` (a grpc interceptor cannot see the TLS auth context,
the handler can) before the servicer runs.

Every method is counted against the caller's certificate:

- spehub methods need a registered, active participant and a token with the
  method's scope (hub.api.identity);
- health Watch and reflection need a registered, active participant and a
  certificate that is not revoked, but no token;
- health Check alone answers any certificate the TLS layer accepted (a load
  balancer's probe, a revoked participant asking whether the hub is up),
  rate-limited by the certificate's fingerprint.

Every call takes one request of its caller's rate, and every streaming call
holds one of its caller's stream slots for as long as it is open.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import inspect
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import grpc

from hub import logs
from hub.api.errors import status_for
from hub.api.identity import Authenticator, Caller, reset_caller, set_caller
from hub.domain import caps
from hub.errors import HubError, InvalidRequestError, RateLimitedError, StoreUnavailableError
from hub.metrics import HubMetrics
from hub.services.limits import ParticipantLimits

log = logging.getLogger("spehub.rpc")

PROTECTED_PREFIX = "/spehub."
# A rate-limited caller gets one log line per interval, with the number of calls refused since its
# last line: one line per refused call wrote 58,688 lines (13.8 MB) in a flood. The metrics count
# every call (grpc_server_handled_total).
RATE_LIMITED_LOG_SECONDS = 10.0
# Answered for any certificate the TLS layer accepted: nothing but "is the hub up".
OPEN_METHODS = frozenset({"/grpc.health.v1.Health/Check"})

Labels = tuple[str, str, str]


class HubInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    def __init__(self, authenticator: Authenticator, metrics: HubMetrics, limits: ParticipantLimits) -> None:
        self.authenticator = authenticator
        self.metrics = metrics
        self.limits = limits
        self.rate_limited = logs.EveryInterval(RATE_LIMITED_LOG_SECONDS)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]],
        details: grpc.HandlerCallDetails,
    ) -> Any:
        handler = await continuation(details)
        if handler is None:
            return None
        method: str = details.method
        service, _, name = method.lstrip("/").rpartition("/")
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
        if not handler.request_streaming:
            # grpc.aio reads the one request of a unary-request method before it calls the
            # behaviour: a call that sent its headers but never its message would wait there
            # unadmitted, taking no slot and skipping the revocation check. Served as a request
            # stream, the wrapper runs when the call starts, admits it, then reads the message.
            factory = (
                grpc.stream_stream_rpc_method_handler
                if handler.response_streaming
                else grpc.stream_unary_rpc_method_handler
            )
        call = _Call(self, (grpc_type, service, name), method, handler.request_streaming)
        if inspect.isasyncgenfunction(behavior):
            wrapped: Callable[..., Any] = call.wrap_async_stream(behavior)
        elif inspect.iscoroutinefunction(behavior):
            wrapped = call.wrap_async_unary(behavior)
        elif handler.request_streaming or handler.response_streaming:
            # A blocking streaming handler would hold a thread for as long as its stream is open.
            raise TypeError(
                f"{method}: streaming handlers must be async (an idle stream must not hold a thread)"
            )
        else:
            wrapped = call.wrap_sync_unary(behavior)  # type: ignore[arg-type]  # a handler has its behaviour
        return factory(
            wrapped,
            request_deserializer=_tolerant(handler.request_deserializer),
            response_serializer=handler.response_serializer,
        )


class _Call:
    """What every wrapper of one method shares: admission, bookkeeping and error translation."""

    def __init__(self, owner: HubInterceptor, labels: Labels, method: str, request_streaming: bool) -> None:
        self.owner = owner
        self.labels = labels
        self.method = method
        self.protected = method.startswith(PROTECTED_PREFIX)
        self.request_streaming = request_streaming

    # -- admission -------------------------------------------------------------------------------

    def begin(self, context: Any) -> tuple[Caller | None, str]:
        """Count the start, identify the caller and take one request of its rate.

        Returns the caller (None for the open health check) and the key its limits are kept by
        (the participant's id; the certificate's for the open health check). Raises HubError."""
        owner = self.owner
        owner.metrics.started.labels(*self.labels).inc()
        offered = dict(context.invocation_metadata() or ()).get("x-request-id", "")
        logs.request_id.set(logs.new_request_id(str(offered)))
        logs.participant.set("")
        if self.method in OPEN_METHODS:
            key = owner.authenticator.certificate_key(context)
            owner.limits.admit(key)
            return None, key
        if self.protected:
            caller = owner.authenticator.authorize(context, self.method)
        else:
            caller = owner.authenticator.identify_caller(context)
        logs.participant.set(caller.participant.id)
        context.identified = caller.participant.id  # counted as theirs even if refused next
        owner.limits.admit(caller.participant.id)
        return caller, caller.participant.id

    async def begin_off_loop(self, context: Any) -> tuple[Caller | None, str]:
        """``begin`` for a call served on the event loop (streams, health): identifying a caller
        reads the directory's version from the store, which may take up to its timeout when the
        database stalls, so it runs on a worker thread, not on the loop every call shares. The
        call's request id and participant come back into its context. The open health check reads
        no store: it is admitted on the loop."""
        if self.method in OPEN_METHODS:
            return self.begin(context)
        run = contextvars.copy_context()
        try:
            return await asyncio.get_running_loop().run_in_executor(None, run.run, self.begin, context)
        finally:
            logs.request_id.set(run.get(logs.request_id, ""))
            logs.participant.set(run.get(logs.participant, ""))

    def stream_slot(self, caller: Caller | None) -> contextlib.AbstractContextManager[None]:
        if caller is None or self.labels[0] == "unary":
            return contextlib.nullcontext()
        return self.owner.limits.stream(caller.participant.id)

    def finish(self, started: float, code: grpc.StatusCode, context: _Aborts) -> None:
        metrics = self.owner.metrics
        metrics.handling.labels(*self.labels).observe(time.perf_counter() - started)
        metrics.handled.labels(*self.labels, code.name).inc()
        if self.protected:  # spehub methods: by participant (an id, never a person)
            # A caller identified, then refused (rate, stream slots), counts as that participant:
            # the SpeHubRateLimited alert names who is limited.
            metrics.by_participant.labels(
                context.identified or "unauthenticated", self.labels[2], code.name
            ).inc()

    def failure(self, context: _Aborts, exc: Exception) -> tuple[grpc.StatusCode, str | None]:
        """The status a failed call ends with: the servicer's own (message None: its abort stands),
        else the translation of the exception."""
        if context.aborted is not None:
            return context.aborted, None
        return self.translate(context, exc)

    def translate(self, context: Any, exc: BaseException) -> tuple[grpc.StatusCode, str]:
        """The status and message for an exception, logged as the operator needs it."""
        if isinstance(exc, HubError):
            code = status_for(exc)
            if isinstance(exc, RateLimitedError):
                context.set_trailing_metadata((("retry-after-ms", str(int(exc.retry_after * 1000) + 1)),))
            extra = {"rpc_method": self.labels[2], "code": code.name, "error": type(exc).__name__}
            if isinstance(exc, StoreUnavailableError):  # the operator's concern, not the caller's
                log.warning("store unavailable: %s", exc, extra=extra)
            elif isinstance(exc, RateLimitedError):  # by participant ("": the open health check's callers)
                refused = self.owner.rate_limited.count(logs.participant.get())
                if refused:
                    log.info("rpc refused", extra={**extra, "refused": refused})
            else:
                log.info("rpc refused", extra=extra)
            return code, str(exc)
        incident = uuid.uuid4().hex[:12]
        log.error("internal error %s in %s", incident, self.labels[2], exc_info=exc)
        return grpc.StatusCode.INTERNAL, f"internal error (incident {incident}); the operator can look it up"

    # -- request messages --------------------------------------------------------------------------

    def _count(self, caller: Caller | None, index: int, item: Any) -> Any:
        self.owner.metrics.msg_received.labels(*self.labels).inc()
        if caller is not None and index:
            self.owner.limits.admit(caller.participant.id)
        _refuse_malformed(item, self.labels[2])
        return item

    async def receive(self, requests: AsyncIterator[Any]) -> Any:
        """The one request message of a unary-request method, read once the call is admitted.

        Raises InvalidRequestError if the client closed its side without one, or if it did not
        parse (after authorisation, so that an unknown caller learns nothing from it)."""
        try:
            request = await anext(requests)
        except StopAsyncIteration:
            raise InvalidRequestError(
                f"the {self.labels[2]} call ended without its request message"
            ) from None
        _refuse_malformed(request, self.labels[2])
        return request

    async def unary_request(self, requests: AsyncIterator[Any], key: str) -> Any:
        """The request of an admitted unary-request call, while holding one of the places of ``key``
        (begin's) for calls waiting for their message."""
        with self.owner.limits.waiting(key):
            return await self.receive(requests)

    def async_requests(self, request: Any, caller: Caller | None) -> Any:
        """Streamed request messages are counted; each after the first takes one request of the rate.

        A request that did not parse is refused here, after authorisation (INVALID_ARGUMENT)."""

        async def counted() -> AsyncIterator[Any]:
            i = 0
            async for item in request:
                yield self._count(caller, i, item)
                i += 1

        return counted()

    # -- the three kinds of wrapper ------------------------------------------------------------------

    def wrap_sync_unary(self, behavior: Callable[..., Any]) -> Callable[..., Any]:
        """A blocking unary method: admitted when the call starts, and run on one of the server's
        worker threads once its request message is there, while the initial metadata (the request
        id) goes out from the event loop meanwhile.

        A client sends the message with the headers: the loop reads it first (for at most
        _MESSAGE_WAIT), and one worker thread admits the call and runs the method. A call whose
        message has not come by then is admitted on a worker thread without it, then waits on the
        loop in one of its caller's waiting places (holding no thread), and the method runs on a
        thread when the message comes.

        grpc's own sync-handler path would have the worker thread wait for the event loop to send
        that metadata: a round trip between the two threads on every call (1-2 ms of a 12 ms pool
        search at 1M profiles)."""

        async def wrapper(
            requests: AsyncIterator[Any], raw_context: grpc.aio.ServicerContext[Any, Any]
        ) -> Any:
            started = time.perf_counter()
            code = grpc.StatusCode.OK
            loop = asyncio.get_running_loop()
            context = _Aborts(raw_context)
            admitted: list[tuple[Caller | None, str]] = []
            announced: list[concurrent.futures.Future[None]] = []
            reading = asyncio.ensure_future(self.receive(requests))
            # Both hops to a worker thread run in this one context: with the call's request id.
            call_context = contextvars.copy_context()

            def serve(read: bool) -> tuple[Any, tuple[grpc.StatusCode, str | None, Exception] | None]:
                """On a worker thread: admit the call (once), then run the method if its request was
                ``read``. A failure is translated (and logged) here, where the log lines have the
                call's request id and participant; a request that did not parse is refused only
                once the call is admitted."""
                try:
                    if not admitted:
                        admitted.append(self.begin(context))
                    if not read:
                        return _UNREAD, None
                    request = reading.result()  # done: its outcome is set, whichever thread asks
                    # Run by the loop in a copy of this thread's context: with the call's request id.
                    announced.append(asyncio.run_coroutine_threadsafe(_announce_async(context), loop))
                    with _acting_as(admitted[0][0]):
                        return behavior(request, context), None
                except Exception as exc:
                    return None, (*self.failure(context, exc), exc)

            try:
                try:
                    await asyncio.wait((reading,), timeout=_MESSAGE_WAIT)
                    response, failed = await loop.run_in_executor(
                        None, call_context.run, serve, reading.done()
                    )
                    if response is _UNREAD:
                        with self.owner.limits.waiting(admitted[0][1]):
                            await asyncio.wait((reading,))
                        response, failed = await loop.run_in_executor(None, call_context.run, serve, True)
                finally:
                    if announced:  # sent before the response or the error status, never after
                        await asyncio.wrap_future(announced[0])
                if failed is None:
                    return response
                code, message, error = failed
                if message is None:  # the servicer's own abort stands
                    raise error
                await context.abort(code, message)
            except _CANCELLED:
                code = grpc.StatusCode.CANCELLED
                raise
            except Exception as exc:  # our abort above (it raises), or sending the metadata failed
                code, message = self.failure(context, exc)
                if message is None:
                    raise
                await context.abort(code, message)
            finally:
                reading.cancel()  # refused before its message came: no longer waited for
                reading.add_done_callback(_seen)
                self.finish(started, code, context)

        return wrapper

    def wrap_async_unary(self, behavior: Callable[..., Any]) -> Callable[..., Any]:
        """A coroutine method (health Check, client streams), on the event loop."""

        async def wrapper(requests: Any, raw_context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            started = time.perf_counter()
            code = grpc.StatusCode.OK
            caller: Caller | None = None
            context = _Aborts(raw_context)
            try:
                caller, key = await self.begin_off_loop(context)
                with self.stream_slot(caller):
                    if self.request_streaming:
                        request = self.async_requests(requests, caller)
                    elif self.labels[0] == "server_stream" and caller is not None:
                        # A coroutine that writes a stream (health Watch): the stream slot it holds
                        # bounds the wait for its message, as for the other streams. A waiting place
                        # too refused a participant's burst of Watches under its stream limit.
                        request = await self.receive(requests)
                    else:
                        request = await self.unary_request(requests, key)
                    await _announce_async(context)
                    with _acting_as(caller):
                        return await behavior(request, context)
            except _CANCELLED:
                code = grpc.StatusCode.CANCELLED
                raise
            except Exception as exc:
                code, message = self.failure(context, exc)
                if message is None:
                    raise
                await context.abort(code, message)
            finally:
                self.finish(started, code, context)

        return wrapper

    def wrap_async_stream(self, behavior: Callable[..., Any]) -> Callable[..., Any]:
        """A streaming-response method (Publish, Subscribe, health Watch, reflection), on the event loop.

        The stream holds one of its caller's stream slots until it ends, and no thread meanwhile."""

        async def wrapper(
            requests: Any, raw_context: grpc.aio.ServicerContext[Any, Any]
        ) -> AsyncIterator[Any]:
            started = time.perf_counter()
            code = grpc.StatusCode.OK
            caller: Caller | None = None
            context = _Aborts(raw_context)
            sent = self.owner.metrics.msg_sent.labels(*self.labels)
            try:
                caller, _ = await self.begin_off_loop(context)
                with self.stream_slot(caller):
                    # Sent once the call holds its stream slot: the client then knows it is open.
                    await _announce_async(context)
                    if self.request_streaming:
                        request = self.async_requests(requests, caller)
                    else:  # the stream slot it holds bounds the wait for it
                        request = await self.receive(requests)
                    with _acting_as(caller):
                        async for item in behavior(request, context):
                            sent.inc()
                            yield item
            except _CANCELLED:
                code = grpc.StatusCode.CANCELLED
                raise
            except Exception as exc:
                code, message = self.failure(context, exc)
                if message is None:
                    raise
                await context.abort(code, message)
            finally:
                self.finish(started, code, context)

        return wrapper


def _seen(task: asyncio.Future[Any]) -> None:
    """Mark a finished task's outcome as seen: it was translated already, or not needed."""
    if not task.cancelled():
        task.exception()


# How long the loop waits for a unary call's request message before it has the call admitted
# without it: a client sends the message with the headers, so it is nearly always there at once.
_MESSAGE_WAIT = 0.005

# What a worker thread's first hop returns when the call is admitted but its request not yet there.
_UNREAD = object()

# The client went away or the server is stopping: the task is cancelled (or the generator closed).
_CANCELLED = (GeneratorExit, asyncio.CancelledError)


class _Aborts:
    """The call's context as the servicer sees it, remembering the status a servicer aborts with
    (grpc.aio contexts do not say), so that it is passed on and counted, not taken for an error."""

    def __init__(self, context: Any) -> None:
        self._context = context
        self.aborted: grpc.StatusCode | None = None
        self.identified = ""  # the participant the call was identified as, once it was

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)

    def abort(self, code: grpc.StatusCode, details: str = "", trailing_metadata: Any = ()) -> Any:
        # Sync contexts raise here; aio contexts return the coroutine that raises when awaited.
        self.aborted = code
        return self._context.abort(code, details, trailing_metadata)


async def _announce_async(context: Any) -> None:
    """Send the initial metadata now, with the call's request id."""
    await context.send_initial_metadata((("x-request-id", logs.request_id.get()),))


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
    """Refuse a request that did not parse, or one with a list past its cap (hub.domain.caps)."""
    if request is MALFORMED:
        raise InvalidRequestError(f"the {method} request is not a valid protobuf message of its type")
    too_long = caps.oversized(request)
    if too_long is not None:
        raise InvalidRequestError(caps.describe(too_long), too_long[0])


@contextlib.contextmanager
def _acting_as(caller: Caller | None) -> Iterator[None]:
    """The servicer sees ``caller`` as current_caller() inside the block."""
    token = set_caller(caller) if caller is not None else None
    try:
        yield
    finally:
        if token is not None:
            reset_caller(token)
