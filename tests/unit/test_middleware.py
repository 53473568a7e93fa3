"""Middleware: telemetry events, log redaction, retry backoff, timeouts, stack order."""

import asyncio
from functools import partial

import pytest

from app.backends.base import Backend, Capabilities
from app.client import Client
from app.errors import (
    Aborted,
    AuthenticationFailed,
    BackendUnreachable,
    ContextWindowExceeded,
    EngineRejected,
    InvalidRequest,
    RateLimited,
    ServerError,
    StreamStalled,
)
from app.ir import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionMessage,
    Choice,
    ChoiceDelta,
    ChunkChoice,
    Usage,
)
from app.middleware import Logging, Retry, Telemetry, Timeout, build_stack, redact
from app.params import ChatRequest
from tests.unit.conftest import run

USER = [{"role": "user", "content": "hi"}]
STREAM_EVENTS = ["gen_ai.request.start", "gen_ai.first_token", "gen_ai.request.end"]
KEY = "sk-abc123def456ghi789jkl"


def chunk(text=None, finish=None, usage=None):
    choices = () if text is None and finish is None else (
        ChunkChoice(index=0, delta=ChoiceDelta(content=text), finish_reason=finish),)
    return ChatCompletionChunk(id="resp-1", created=0, model="m-served", choices=choices, usage=usage)


CHUNKS = (chunk("Hel"), chunk("lo", finish="stop"), chunk(usage=Usage(5, 2, 7)))


class FakeStream:
    """Yields ``items`` in order; an exception among them is raised at that point."""

    def __init__(self, items, *, fail=None, hang=False):
        self.items = list(items)
        self.fail = fail  # raised by the first __anext__
        self.hang = hang
        self.closed = False

    async def start(self):
        pass

    def __aiter__(self):
        return self

    async def __anext__(self):
        if self.hang:
            await asyncio.Event().wait()  # the engine never answers
        if self.fail is not None:
            error, self.fail = self.fail, None
            raise error
        if self.closed or not self.items:
            raise StopAsyncIteration
        item = self.items.pop(0)
        if isinstance(item, BaseException):
            raise item
        return item

    async def stop(self):
        self.closed = True

    async def aclose(self):
        self.closed = True


class FakeBackend:
    """Scripted: each call first raises the next error in ``script`` (if any), then answers.
    ``calls`` records ("complete" | "stream", request); ``streams`` the streams handed out."""

    def __init__(self, name="fake", *, script=(), chunks=CHUNKS, hang=False, clock=None, latency=0.0):
        self.name = name
        self.clock, self.latency = clock, latency
        self.script = list(script)
        self.chunks = chunks
        self.hang = hang
        self.calls = []
        self.streams = []
        self.loaded = "m"

    def capabilities(self, model):
        return Capabilities(tools="native", local=True)

    async def complete(self, request):
        self.calls.append(("complete", request))
        if self.hang:
            await asyncio.Event().wait()
        if self.clock is not None:
            self.clock.now += self.latency  # the time this answer took
        if self.script:
            raise self.script.pop(0)
        msg = ChatCompletionMessage(content="Hello")
        return ChatCompletion(id="resp-1", created=0, model="m-served", choices=(Choice(0, msg, "stop"),),
                              usage=Usage(5, 2, 7), backend=self.name)

    def stream(self, request):
        self.calls.append(("stream", request))
        s = FakeStream(self.chunks, fail=self.script.pop(0) if self.script else None, hang=self.hang)
        self.streams.append(s)
        return s


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


class Sleeps(list):
    """An injected ``sleep`` that records the delays instead of waiting."""

    async def __call__(self, seconds):
        self.append(seconds)


def request(**params):
    return ChatRequest.build(model="m", messages=USER, **params)


async def collect(stream):
    return [c async for c in stream]


# ---------------------------------------------------------------------------------------- telemetry


def test_telemetry_complete_emits_start_then_end_with_gen_ai_attributes():
    events, clock = [], Clock()
    backend = Telemetry(FakeBackend(clock=clock, latency=2.0), events.append, clock=clock)

    completion = run(backend.complete(request(max_tokens=64, temperature=0.5)))
    assert completion.choices[0].message.content == "Hello"
    start, end = events
    assert start == {"event": "gen_ai.request.start", "request_id": start["request_id"],
                     "gen_ai.operation.name": "chat", "gen_ai.system": "fake", "gen_ai.request.model": "m",
                     "gen_ai.request.max_tokens": 64, "gen_ai.request.temperature": 0.5}
    assert "gen_ai.request.top_p" not in start  # not given, not reported
    assert end == {"event": "gen_ai.request.end", "request_id": start["request_id"],
                   "gen_ai.response.model": "m-served", "gen_ai.response.id": "resp-1",
                   "gen_ai.response.finish_reasons": ["stop"], "gen_ai.backend": "fake",
                   "gen_ai.usage.input_tokens": 5, "gen_ai.usage.output_tokens": 2,
                   "duration_s": 2.0, "tokens_per_s": 1.0}


def test_telemetry_stream_reports_first_token_once_and_end_with_usage():
    events, clock = [], Clock()
    client = Client(Telemetry(FakeBackend(), events.append, clock=clock))

    async def go():
        stream = await client.chat.completions.create(messages=USER, model="m", stream=True,
                                                      stream_options={"include_usage": True})
        clock.now = 0.25
        await stream.__anext__()
        clock.now = 1.0
        async with stream:
            await collect(stream)
        return stream

    stream = run(go())
    assert stream.content == "Hello"
    assert [e["event"] for e in events] == STREAM_EVENTS
    start, ttft, end = events
    assert ttft == {"event": "gen_ai.first_token", "request_id": start["request_id"],
                    "time_to_first_token_s": 0.25}
    assert end["request_id"] == start["request_id"]
    assert end["gen_ai.response.finish_reasons"] == ["stop"]
    assert end["gen_ai.usage.input_tokens"] == 5 and end["gen_ai.usage.output_tokens"] == 2
    assert end["gen_ai.response.id"] == "resp-1" and end["gen_ai.backend"] == "fake"
    assert end["duration_s"] == 1.0 and end["tokens_per_s"] == 2.0


def test_telemetry_stream_closed_early_ends_once_as_abort():
    events = []
    client = Client(Telemetry(FakeBackend(), events.append))

    async def go():
        async with await client.chat.completions.create(messages=USER, stream=True) as stream:
            await stream.__anext__()

    run(go())
    assert [e["event"] for e in events] == STREAM_EVENTS
    assert events[-1]["gen_ai.response.finish_reasons"] == ["abort"]
    assert "gen_ai.usage.input_tokens" not in events[-1]  # never received, so not made up


@pytest.mark.parametrize("streaming", [False, True])
def test_telemetry_error_event_names_the_class_and_hides_the_key(streaming):
    events = []
    error = AuthenticationFailed(f"HTTP 401: Incorrect API key provided: {KEY}")
    client = Client(Telemetry(FakeBackend(script=[error]), events.append))

    async def go():
        answer = await client.chat.completions.create(messages=USER, stream=streaming)
        await collect(answer)  # a stream fails when its first chunk is read

    with pytest.raises(AuthenticationFailed):
        run(go())
    assert [e["event"] for e in events] == ["gen_ai.request.start", "gen_ai.request.error"]
    failed = events[-1]
    assert failed["error.type"] == "AuthenticationFailed"
    assert "[REDACTED]" in failed["error.message"]
    assert "sk-abc" not in repr(events)


# ------------------------------------------------------------------------------------------ logging


@pytest.mark.parametrize("text, secret", [
    (f"Incorrect API key provided: {KEY}.", "sk-abc123"),
    ("header Authorization: Bearer xyz.123-abc", "xyz.123"),
    ("GET /v1beta/models?key=AIzaSyDxx&alt=sse failed", "AIzaSyDxx"),
    ("token hf_aBcDeFgHiJkLmNoPqRsTuVwXyZ012345 rejected", "hf_aBcD"),
])
def test_redact_hides_things_that_look_like_keys(text, secret):
    out = redact(text)
    assert secret not in out and "[REDACTED]" in out


def test_redact_leaves_ordinary_text_alone():
    text = "HTTP 500: upstream overloaded, model Qwen2.5-0.5B-Instruct not ready"
    assert redact(text) == text


def test_logging_writes_one_line_per_start_end_error_and_redacts_keys():
    lines = []
    error = AuthenticationFailed(f"HTTP 401: bad key {KEY} (sent as Bearer {KEY[3:]})")
    backend = Logging(FakeBackend(script=[error]), lines.append)

    with pytest.raises(AuthenticationFailed):
        run(backend.complete(request()))
    run(backend.complete(request()))
    assert len(lines) == 4
    assert "start" in lines[0] and "error: AuthenticationFailed" in lines[1]
    assert "end" in lines[3] and "finish=stop" in lines[3] and "tokens=5/2" in lines[3]
    assert "sk-abc" not in "\n".join(lines) and KEY[3:] not in "\n".join(lines)
    assert "Bearer [REDACTED]" in lines[1]


# -------------------------------------------------------------------------------------------- retry


def test_retry_server_error_then_success_waits_a_jittered_delay():
    sleeps, fake = Sleeps(), FakeBackend(script=[ServerError("HTTP 502: bad gateway", status=502)])
    completion = run(Retry(fake, base_delay=0.5, sleep=sleeps).complete(request()))
    assert completion.choices[0].message.content == "Hello"
    assert len(fake.calls) == 2
    assert len(sleeps) == 1 and 0 <= sleeps[0] <= 0.5


def test_retry_backoff_doubles_and_is_capped_by_max_delay():
    sleeps = Sleeps()
    fake = FakeBackend(script=[BackendUnreachable("offline")] * 4)
    backend = Retry(fake, attempts=5, base_delay=0.5, max_delay=3.0, sleep=sleeps, rand=lambda: 1.0)
    run(backend.complete(request()))
    assert sleeps == [0.5, 1.0, 2.0, 3.0]


@pytest.mark.parametrize("retry_after, waited", [(2.0, 2.0), (100.0, 8.0)])
def test_retry_honours_rate_limit_retry_after_up_to_max_delay(retry_after, waited):
    sleeps, fake = Sleeps(), FakeBackend(script=[RateLimited("HTTP 429", retry_after=retry_after)])
    run(Retry(fake, max_delay=8.0, sleep=sleeps, rand=lambda: 0.0).complete(request()))
    assert sleeps == [waited] and len(fake.calls) == 2


@pytest.mark.parametrize("error", [
    InvalidRequest("temperature: too hot", param="temperature"), AuthenticationFailed("HTTP 401"),
    EngineRejected("bad"), ContextWindowExceeded("too long"), Aborted("stopped"),
])
def test_retry_does_not_retry_what_would_fail_again(error):
    sleeps, fake = Sleeps(), FakeBackend(script=[error])
    with pytest.raises(type(error)):
        run(Retry(fake, sleep=sleeps).complete(request()))
    assert len(fake.calls) == 1 and sleeps == []


def test_retry_gives_up_after_attempts_with_the_last_error():
    sleeps = Sleeps()
    fake = FakeBackend(script=[ServerError("first"), ServerError("second"), ServerError("third")])
    with pytest.raises(ServerError, match="third"):
        run(Retry(fake, attempts=3, sleep=sleeps).complete(request()))
    assert len(fake.calls) == 3 and len(sleeps) == 2


def test_retry_stream_retries_before_the_first_chunk():
    sleeps, fake = Sleeps(), FakeBackend(script=[BackendUnreachable("Failed to fetch")])
    client = Client(Retry(fake, sleep=sleeps))

    async def go():
        stream = await client.chat.completions.create(messages=USER, stream=True)
        await collect(stream)
        return stream.content

    assert run(go()) == "Hello"
    assert len(fake.streams) == 2 and fake.streams[0].closed  # the failed attempt was released
    assert len(sleeps) == 1


def test_retry_stream_error_after_first_chunk_propagates_unretried():
    sleeps = Sleeps()
    fake = FakeBackend(chunks=(chunk("Hel"), ServerError("connection reset mid-stream")))
    backend = Retry(fake, sleep=sleeps)

    async def go():
        stream = backend.stream(request(stream=True))
        await stream.start()
        seen = [(await stream.__anext__()).choices[0].delta.content]
        with pytest.raises(ServerError):
            await stream.__anext__()
        return seen

    assert run(go()) == ["Hel"]
    assert len(fake.streams) == 1 and sleeps == []


# ------------------------------------------------------------------------------------------ timeout


def test_timeout_complete_raises_backend_unreachable():
    with pytest.raises(BackendUnreachable, match=r"timed out after 0.01s"):
        run(Timeout(FakeBackend(hang=True), 0.01).complete(request()))


def test_timeout_stream_first_token_raises_and_closes_the_inner_stream():
    fake = FakeBackend(hang=True)
    client = Client(Timeout(fake, 60, first_token_seconds=0.01))
    with pytest.raises(BackendUnreachable, match=r"timed out after 0.01s"):
        run(client.chat.completions.create(messages=USER, stream=True))
    assert fake.streams[0].closed


def test_timeout_stream_that_answers_in_time_streams_everything():
    client = Client(Timeout(FakeBackend(), 1.0))

    async def go():
        stream = await client.chat.completions.create(messages=USER, stream=True)
        await collect(stream)
        return stream.content, stream.finish_reason

    assert run(go()) == ("Hello", "stop")


def test_timeout_inside_retry_is_retried():
    sleeps, fake = Sleeps(), FakeBackend(hang=True)
    backend = build_stack(fake, [partial(Retry, attempts=2, sleep=sleeps), partial(Timeout, seconds=0.01)])
    with pytest.raises(BackendUnreachable):
        run(backend.complete(request()))
    assert len(fake.calls) == 2 and len(sleeps) == 1


class StallingStream(FakeStream):
    """Yields its items, then never answers again (an engine that stalls mid-answer)."""

    async def __anext__(self):
        if not self.items and not self.closed:
            await asyncio.Event().wait()
        return await super().__anext__()


class StallingBackend(FakeBackend):
    def stream(self, request):
        self.calls.append(("stream", request))
        s = StallingStream([chunk("Hel"), chunk("lo")])
        self.streams.append(s)
        return s


def test_timeout_stream_that_stalls_mid_answer_ends_with_stream_stalled_and_keeps_what_came():
    fake = StallingBackend()
    client = Client(Timeout(fake, 60, first_token_seconds=60, idle_seconds=0.01))

    async def go():
        stream = await client.chat.completions.create(messages=USER, stream=True)
        got = []
        with pytest.raises(StreamStalled, match=r"no new token for 0.01s"):
            async for c in stream:
                got.append(c.choices[0].delta.content)
        return got

    assert run(asyncio.wait_for(go(), 5)) == ["Hel", "lo"]
    assert fake.streams[0].closed  # the engine was told to stop
    assert issubclass(StreamStalled, BackendUnreachable)


def test_timeout_idle_bound_is_per_chunk_not_per_answer():
    """A slow stream whose every chunk comes within the idle bound is not cut, however long it runs."""

    class Slow(FakeStream):
        async def __anext__(self):
            await asyncio.sleep(0.02)
            return await super().__anext__()

    fake = FakeBackend()
    fake.stream = lambda request: Slow([chunk(str(i)) for i in range(6)] + [chunk(finish="stop")])
    client = Client(Timeout(fake, 60, idle_seconds=0.05))

    async def go():
        stream = await client.chat.completions.create(messages=USER, stream=True)
        await collect(stream)
        return stream.content

    assert run(go()) == "012345"


# --------------------------------------------------------------------------------------------- stack


def test_build_stack_puts_the_first_middleware_outermost():
    order = []

    class Mark:
        def __init__(self, inner, label):
            self.inner, self.label, self.name = inner, label, inner.name

        def capabilities(self, model):
            return self.inner.capabilities(model)

        async def complete(self, request):
            order.append(self.label)
            return await self.inner.complete(request)

        def stream(self, request):
            return self.inner.stream(request)

    fake = FakeBackend()
    backend = build_stack(fake, [partial(Mark, label="outer"), partial(Mark, label="inner")])
    run(backend.complete(request()))
    assert order == ["outer", "inner"]
    assert backend.label == "outer" and backend.inner.inner is fake


def test_middleware_looks_like_the_backend_it_wraps():
    fake = FakeBackend(name="webllm")
    backend = build_stack(fake, [partial(Telemetry, emit=lambda e: None), Logging, Retry,
                                 partial(Timeout, seconds=5)])
    assert isinstance(backend, Backend)
    assert backend.name == "webllm"
    assert backend.capabilities("m") == fake.capabilities("m")
    assert backend.loaded == "m"  # other attributes reach the wrapped backend (the router reads this)


class BufferingStream(StallingStream):
    """A stream whose chunks have all arrived at once (``buffered()`` says how many), then stalls."""

    def buffered(self):
        return 0 if self.closed else len(self.items)


class BufferingBackend(FakeBackend):
    def stream(self, request):
        self.calls.append(("stream", request))
        s = BufferingStream([chunk("a"), chunk("b"), chunk("c"), chunk("d")])
        self.streams.append(s)
        return s


def test_batches_hold_what_has_arrived_and_a_stall_after_them_still_ends_with_stream_stalled():
    fake = BufferingBackend()
    client = Client(build_stack(fake, [partial(Telemetry, emit=lambda e: None), partial(Logging, log=lambda s: None), Retry,
                                       partial(Timeout, seconds=60, idle_seconds=0.01)]))

    async def go():
        stream = await client.chat.completions.create(messages=USER, stream=True)
        got = []
        with pytest.raises(StreamStalled, match=r"no new token for 0.01s"):
            async for batch in stream.batches():
                got.append([c.choices[0].delta.content for c in batch])
        return got, stream.content

    # The first chunk came with the start (Retry and Timeout fetch it), the rest in one batch: none
    # waited for another, and the stall after them is reported, not hidden.
    got, content = run(asyncio.wait_for(go(), 5))
    assert [t for batch in got for t in batch] == ["a", "b", "c", "d"]
    assert got[-1] == ["b", "c", "d"] or got == [["a", "b", "c", "d"]]
    assert content == "abcd"
    assert fake.streams[0].closed


def test_batches_of_a_stream_that_cannot_say_what_has_arrived_are_single_chunks():
    async def go():
        stream = await Client(FakeBackend()).chat.completions.create(messages=USER, stream=True)
        return [len(batch) async for batch in stream.batches()], stream.content

    assert run(asyncio.wait_for(go(), 5)) == ([1, 1, 1], "Hello")
