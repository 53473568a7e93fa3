"""Policy around a backend: telemetry, logging, retry, timeout. Each middleware is a Backend that
wraps another, so they stack like Starlette's middleware and the client cannot tell them apart::

    backend = build_stack(router, [
        partial(Telemetry, emit=store.on_event),   # outermost: sees one request, retries included
        Logging,
        Retry,
        partial(Timeout, seconds=60, first_token_seconds=20),   # innermost: bounds each attempt
    ])
    client = Client(backend)

Order matters: Timeout inside Retry makes a timed-out attempt retryable (it raises
BackendUnreachable); Telemetry outside Retry reports one request with its total time.

Streams are wrapped too. Retry acts only until the first chunk reaches the caller; a chunk once shown
cannot be taken back, so an error after it propagates unchanged. Timeout bounds the first chunk, and
then each wait for the next one (``idle_seconds``): a stream that stalls mid-answer ends with
StreamStalled, and what came before stays the caller's.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from app.backends.base import Backend, Capabilities, ChunkStream
from app.errors import BackendUnreachable, RateLimited, ServerError, StreamStalled
from app.ir import ChatCompletion, ChatCompletionChunk, Usage
from app.params import ChatRequest

Middleware = Callable[[Backend], Backend]

# Failures that another try may cure. Everything else (a bad request, a refused key, a prompt too long,
# a stop the user asked for) would fail the same way again.
RETRYABLE: tuple[type[Exception], ...] = (RateLimited, ServerError, BackendUnreachable)


def build_stack(backend: Backend, middleware: list[Middleware]) -> Backend:
    """Wrap ``backend`` in ``middleware``, the first in the list outermost (it sees the call first).

        build_stack(b, [Logging, Retry])                  # == Logging(Retry(b))
        build_stack(b, [partial(Timeout, seconds=30)])    # middleware with settings: a partial
    """
    handler = backend
    for mw in reversed(middleware):
        handler = mw(handler)
    return handler


class _Wrapper:
    """Base of the middleware: ``name`` and ``capabilities`` are the inner backend's."""

    def __init__(self, inner: Backend) -> None:
        self.inner = inner

    @property
    def name(self) -> str:
        return self.inner.name

    def capabilities(self, model: str | None) -> Capabilities:
        return self.inner.capabilities(model)

    def __getattr__(self, attr: str) -> Any:
        # Anything else (WebLLMBackend.load, .loaded, OpenAICompatBackend.on_device) is the wrapped
        # backend's, so a wrapped backend can still be managed and routed like the bare one.
        if attr == "inner":
            raise AttributeError(attr)
        return getattr(self.inner, attr)


class _StreamWrapper:
    """A ChunkStream forwarding to ``_inner``; also its ``served_by``/``route`` (read by the client)."""

    def __init__(self, inner: ChunkStream) -> None:
        self._inner = inner

    async def start(self) -> None:
        await self._inner.start()

    def __aiter__(self) -> _StreamWrapper:
        return self

    async def __anext__(self) -> ChatCompletionChunk:
        return await self._inner.__anext__()

    async def stop(self) -> None:
        await self._inner.stop()

    async def aclose(self) -> None:
        await self._inner.aclose()

    def __getattr__(self, attr: str) -> Any:
        if attr == "_inner":
            raise AttributeError(attr)
        return getattr(self._inner, attr)


_ENDED = object()  # the inner stream ended before yielding anything


class _FirstChunkStream(_StreamWrapper):
    """A stream whose ``start()`` also fetches the first chunk (through ``_open``), so the policy it
    applies (retry, timeout) covers exactly the part before the caller has seen anything."""

    def __init__(self, inner: ChunkStream) -> None:
        super().__init__(inner)
        self._opened = False
        self._first: Any = None

    async def _open(self) -> Any:
        raise NotImplementedError

    async def _first_chunk(self) -> Any:
        await self._inner.start()
        try:
            return await self._inner.__anext__()
        except StopAsyncIteration:
            return _ENDED

    async def start(self) -> None:
        if not self._opened:
            self._opened = True  # once: a failed open is not silently redone by the next __anext__
            self._first = await self._open()

    def buffered(self) -> int:
        """Chunks that have arrived and wait to be taken (the first one included)."""
        buffered = getattr(self._inner, "buffered", None)
        return (self._first is not None and self._first is not _ENDED) + (buffered() if buffered is not None else 0)

    async def __anext__(self) -> ChatCompletionChunk:
        await self.start()
        if self._first is not None:
            first, self._first = self._first, None
            if first is _ENDED:
                raise StopAsyncIteration
            return first
        return await self._inner.__anext__()


# ---------------------------------------------------------------------------------------- telemetry


_SECRETS = [
    (re.compile(r"\bBearer\s+[^\s\"',;]+", re.IGNORECASE), "Bearer [REDACTED]"),
    (re.compile(r"\bsk-[A-Za-z0-9_*.\-]{3,}"), "[REDACTED]"),
    (re.compile(r"\b((?:api[_-]?)?key|token|access_token|secret|password)=[^\s&\"',;]+", re.IGNORECASE),
     r"\1=[REDACTED]"),
    # Most API keys are long runs of base64url characters (Gemini's AIza..., HF's hf_...). This also
    # hides some long model ids in messages; hiding too much is the safe way to be wrong.
    (re.compile(r"(?<![A-Za-z0-9_\-])[A-Za-z0-9_\-]{24,}(?![A-Za-z0-9_\-])"), "[REDACTED]"),
]


def redact(text: str) -> str:
    """``text`` with anything that looks like a credential replaced by ``[REDACTED]``.

        redact("HTTP 401: bad key sk-abc123def456")   # 'HTTP 401: bad key [REDACTED]'
        redact("Authorization: Bearer abc.def")       # 'Authorization: Bearer [REDACTED]'
    """
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


class Telemetry(_Wrapper):
    """Reports each request as plain-dict events named after OpenTelemetry's gen_ai conventions.

        events = []
        backend = Telemetry(inner, emit=events.append)
        await Client(backend).chat.completions.create(messages=msgs, max_tokens=64)
        [e["event"] for e in events]   # ['gen_ai.request.start', 'gen_ai.request.end']

    Events, all carrying ``request_id``:

    - ``gen_ai.request.start``: gen_ai.operation.name, gen_ai.system (this backend's name),
      gen_ai.request.model, and gen_ai.request.max_tokens / temperature / top_p when given.
    - ``gen_ai.first_token`` (streams only, once): time_to_first_token_s, from ``start()`` to the
      first chunk.
    - ``gen_ai.request.end``: gen_ai.response.model / id / finish_reasons, gen_ai.backend (which
      backend served it), duration_s, and when the usage is known gen_ai.usage.input_tokens /
      output_tokens and tokens_per_s (output tokens over duration_s, prefill included). A stream
      closed early ends here too, its finish_reasons ``["abort"]`` if none was received.
    - ``gen_ai.request.error``: error.type (the class name, to branch on), error.message (redacted),
      duration_s.
    """

    def __init__(self, inner: Backend, emit: Callable[[dict[str, Any]], None],
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(inner)
        self._emit = emit
        self._clock = clock

    async def complete(self, request: ChatRequest) -> ChatCompletion:
        request_id, started = self._started(request)
        try:
            completion = await self.inner.complete(request)
        except BaseException as error:  # a cancelled request ends too; the UI must hear of it
            self._failed(request_id, error, started)
            raise
        reasons = [c.finish_reason for c in completion.choices if c.finish_reason is not None]
        self._ended(request_id, started, model=completion.model, response_id=completion.id,
                    finish_reasons=reasons, usage=completion.usage, backend=completion.backend)
        return completion

    def stream(self, request: ChatRequest) -> ChunkStream:
        return _ObservedStream(self.inner.stream(request), self, request)

    def _started(self, request: ChatRequest) -> tuple[str, float]:
        request_id = uuid.uuid4().hex[:16]
        event: dict[str, Any] = {
            "event": "gen_ai.request.start", "request_id": request_id, "gen_ai.operation.name": "chat",
            "gen_ai.system": self.name, "gen_ai.request.model": request.model,
        }
        for param in ("max_tokens", "temperature", "top_p"):
            if param in request.params:
                event[f"gen_ai.request.{param}"] = request.params[param]
        started = self._clock()
        self._emit(event)
        return request_id, started

    def _first_token(self, request_id: str, started: float) -> None:
        self._emit({"event": "gen_ai.first_token", "request_id": request_id,
                    "time_to_first_token_s": self._clock() - started})

    def _ended(self, request_id: str, started: float, *, model: str, response_id: str,
               finish_reasons: list[str], usage: Usage | None, backend: str) -> None:
        duration = self._clock() - started
        event: dict[str, Any] = {
            "event": "gen_ai.request.end", "request_id": request_id,
            "gen_ai.response.model": model, "gen_ai.response.id": response_id,
            "gen_ai.response.finish_reasons": finish_reasons, "gen_ai.backend": backend or self.name,
            "duration_s": duration,
        }
        if usage is not None:
            event["gen_ai.usage.input_tokens"] = usage.prompt_tokens
            event["gen_ai.usage.output_tokens"] = usage.completion_tokens
            if duration > 0:
                event["tokens_per_s"] = usage.completion_tokens / duration
        self._emit(event)

    def _failed(self, request_id: str, error: BaseException, started: float) -> None:
        # The message may quote a header or URL with a key in it: only the redacted text leaves.
        self._emit({"event": "gen_ai.request.error", "request_id": request_id,
                    "error.type": type(error).__name__, "error.message": redact(str(error)),
                    "duration_s": self._clock() - started})


class _ObservedStream(_StreamWrapper):
    """Reports a stream's start, first chunk and end (exhausted, failed or closed) to a Telemetry."""

    def __init__(self, inner: ChunkStream, telemetry: Telemetry, request: ChatRequest) -> None:
        super().__init__(inner)
        self._telemetry = telemetry
        self._request = request
        self._request_id = ""
        self._started: float | None = None
        self._seen_first = False
        self._done = False
        # Only what the end event needs: cheaper than accumulating the text on the per-token path.
        self._id = self._model = ""
        self._finish: dict[int, str] = {}
        self._usage: Usage | None = None

    def _begin(self) -> None:
        if self._started is None:
            self._request_id, self._started = self._telemetry._started(self._request)

    async def start(self) -> None:
        self._begin()
        try:
            await self._inner.start()
        except BaseException as error:
            self._fail(error)
            raise

    async def __anext__(self) -> ChatCompletionChunk:
        self._begin()
        try:
            chunk = await self._inner.__anext__()
        except StopAsyncIteration:
            self._end()
            raise
        except BaseException as error:
            self._fail(error)
            raise
        if not self._seen_first:
            self._seen_first = True
            self._telemetry._first_token(self._request_id, self._started)  # type: ignore[arg-type]
        self._id = self._id or chunk.id
        self._model = self._model or chunk.model
        for choice in chunk.choices:
            if choice.finish_reason is not None:
                self._finish[choice.index] = choice.finish_reason
        if chunk.usage is not None:
            self._usage = chunk.usage
        return chunk

    async def aclose(self) -> None:
        try:
            await self._inner.aclose()
        finally:
            if self._started is not None and not self._done:
                self._finish = self._finish or {0: "abort"}  # closed before the engine said why
                self._end()

    def _end(self) -> None:
        if self._done or self._started is None:
            return
        self._done = True
        backend = getattr(self._inner, "served_by", "") or self._telemetry.name
        self._telemetry._ended(self._request_id, self._started, model=self._model, response_id=self._id,
                               finish_reasons=[self._finish[i] for i in sorted(self._finish)],
                               usage=self._usage, backend=backend)

    def _fail(self, error: BaseException) -> None:
        if self._done or self._started is None:
            return
        self._done = True
        self._telemetry._failed(self._request_id, error, self._started)


# ------------------------------------------------------------------------------------------ logging


class Logging(_Wrapper):
    """One log line per request start, end and error; error messages pass through :func:`redact`.

        backend = Logging(inner, log=console.log)
        # chat 3f2a... start: system=webllm model=Qwen2.5-0.5B-Instruct-q4f32_1-MLC
        # chat 3f2a... end: backend=webllm finish=stop tokens=12/40 1.52s
    """

    def __init__(self, inner: Backend, log: Callable[[str], None] = print, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(inner)
        self._log = log
        # The same events as Telemetry, written as lines: one place decides when a request ends.
        self._observed = Telemetry(inner, self._write, clock)

    async def complete(self, request: ChatRequest) -> ChatCompletion:
        return await self._observed.complete(request)

    def stream(self, request: ChatRequest) -> ChunkStream:
        return self._observed.stream(request)

    def _write(self, event: dict[str, Any]) -> None:
        rid = event["request_id"]
        match event["event"]:
            case "gen_ai.request.start":
                self._log(f"chat {rid} start: system={event['gen_ai.system']} "
                          f"model={event['gen_ai.request.model']}")
            case "gen_ai.request.end":
                used = (event.get("gen_ai.usage.input_tokens"), event.get("gen_ai.usage.output_tokens"))
                tokens = f" tokens={used[0]}/{used[1]}" if used[0] is not None else ""
                finish = ",".join(event["gen_ai.response.finish_reasons"]) or "-"
                self._log(f"chat {rid} end: backend={event['gen_ai.backend']} finish={finish}{tokens} "
                          f"{event['duration_s']:.2f}s")
            case "gen_ai.request.error":
                self._log(f"chat {rid} error: {event['error.type']}: {event['error.message']} "
                          f"{event['duration_s']:.2f}s")


# -------------------------------------------------------------------------------------------- retry


class Retry(_Wrapper):
    """Tries again on failures another try may cure (:data:`RETRYABLE`), with full-jitter backoff.

        backend = Retry(inner, attempts=3)   # at most 3 calls; waits < 0.5 s, then < 1 s between them

    The wait before retry ``n`` (0-based) is ``rand() * min(max_delay, base_delay * 2**n)``; after
    a RateLimited that says ``retry_after``, that many seconds (at most ``max_delay``). A stream is
    retried only until its first chunk: after that the caller has seen output. ``on_retry(backend,
    attempt, error, delay)`` hears of each retry before its wait (the page's Activity shows them).
    """

    def __init__(self, inner: Backend, attempts: int = 3, base_delay: float = 0.5, max_delay: float = 8.0,
                 sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
                 rand: Callable[[], float] = random.random,
                 on_retry: Callable[[str, int, Exception, float], None] | None = None) -> None:
        super().__init__(inner)
        self._on_retry = on_retry
        self.attempts = max(1, attempts)
        self.base_delay = base_delay
        self.max_delay = max_delay
        self._sleep = sleep
        self._rand = rand

    def delay(self, attempt: int, error: Exception) -> float:
        """Seconds to wait after failed attempt ``attempt`` (0-based)."""
        if isinstance(error, RateLimited) and error.retry_after is not None:
            return min(self.max_delay, error.retry_after)
        # Full jitter spreads clients that failed together, so they do not all retry at once.
        return self._rand() * min(self.max_delay, self.base_delay * 2 ** attempt)

    async def wait(self, attempt: int, error: Exception) -> None:
        """Say that a retry comes (``on_retry(backend, attempt, error, delay)``), then wait for it."""
        delay = self.delay(attempt, error)
        if self._on_retry is not None:
            self._on_retry(self.name, attempt, error, delay)
        await self._sleep(delay)

    async def complete(self, request: ChatRequest) -> ChatCompletion:
        for attempt in range(self.attempts):
            try:
                return await self.inner.complete(request)
            except RETRYABLE as error:
                if attempt + 1 >= self.attempts:
                    raise
                await self.wait(attempt, error)
        raise AssertionError("unreachable")

    def stream(self, request: ChatRequest) -> ChunkStream:
        return _RetryStream(self, request)


class _RetryStream(_FirstChunkStream):
    def __init__(self, retry: Retry, request: ChatRequest) -> None:
        # The first attempt is made now, as the bare backend would: a request it refuses outright
        # (InvalidRequest) fails at stream(), not later.
        super().__init__(retry.inner.stream(request))
        self._retry = retry
        self._request = request
        self._closed = False

    async def _open(self) -> Any:
        for attempt in range(self._retry.attempts):
            try:
                return await self._first_chunk()
            except RETRYABLE as error:
                # Release the failed attempt (its engine turn, its fetch) before anything else.
                with contextlib.suppress(Exception):  # its cleanup must not hide the error that matters
                    await self._inner.aclose()
                if attempt + 1 >= self._retry.attempts or self._closed:
                    raise
                await self._retry.wait(attempt, error)
                if self._closed:
                    raise
                self._inner = self._retry.inner.stream(self._request)
        raise AssertionError("unreachable")

    async def aclose(self) -> None:
        self._closed = True
        await self._inner.aclose()


# ------------------------------------------------------------------------------------------ timeout


class Timeout(_Wrapper):
    """Bounds how long a request may take; past it raises BackendUnreachable("timed out after Ns").

        backend = Timeout(inner, 60, first_token_seconds=20, idle_seconds=30)

    ``complete()`` must finish within ``seconds``. A stream must yield its first chunk within
    ``first_token_seconds`` (default ``seconds``) of ``start()``, waiting for the engine's turn
    included, and then each further chunk within ``idle_seconds`` of the one before (None: no bound);
    past either it is closed, so the engine stops. The total length is not bounded: a long answer
    that keeps coming is not a failure. A stall after the first chunk raises StreamStalled (a
    BackendUnreachable), which nobody retries: the caller has seen output.
    """

    def __init__(self, inner: Backend, seconds: float, *, first_token_seconds: float | None = None,
                 idle_seconds: float | None = 60.0) -> None:
        super().__init__(inner)
        self.seconds = seconds
        self.first_token_seconds = first_token_seconds if first_token_seconds is not None else seconds
        self.idle_seconds = idle_seconds

    async def complete(self, request: ChatRequest) -> ChatCompletion:
        try:
            return await asyncio.wait_for(self.inner.complete(request), self.seconds)
        except TimeoutError:
            # BackendUnreachable so that Retry and the router treat it like any unanswered request.
            raise BackendUnreachable(f"timed out after {self.seconds:g}s") from None

    def stream(self, request: ChatRequest) -> ChunkStream:
        return _TimeoutStream(self.inner.stream(request), self.first_token_seconds, self.idle_seconds)


class _TimeoutStream(_FirstChunkStream):
    def __init__(self, inner: ChunkStream, seconds: float, idle: float | None = None) -> None:
        super().__init__(inner)
        self._seconds = seconds
        self._idle = idle

    async def __anext__(self) -> ChatCompletionChunk:
        await self.start()
        if self._first is not None or self._idle is None:
            return await super().__anext__()
        buffered = getattr(self._inner, "buffered", None)
        if buffered is not None and buffered():
            return await self._inner.__anext__()  # already here: no timer to set (and fire later)
        try:
            return await asyncio.wait_for(self._inner.__anext__(), self._idle)
        except TimeoutError:
            with contextlib.suppress(Exception):  # its cleanup must not hide why it ended
                await self._inner.aclose()  # or the engine goes on generating for nobody
            raise StreamStalled(f"no new token for {self._idle:g}s: the answer stalled") from None

    async def _open(self) -> Any:
        try:
            return await asyncio.wait_for(self._first_chunk(), self._seconds)
        except TimeoutError:
            await self._inner.aclose()  # or the engine goes on generating for nobody
            raise BackendUnreachable(
                f"timed out after {self._seconds:g}s waiting for the first token") from None
