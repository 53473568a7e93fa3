"""Router: strategies, fallback rules, circuit breaker timing (injected clock), stream fallback."""

import pytest

from app.backends.base import Capabilities
from app.client import Client
from app.errors import (
    AuthenticationFailed,
    BackendUnreachable,
    ContextWindowExceeded,
    EngineRejected,
    NoBackendAvailable,
    RateLimited,
    ServerError,
    UsageError,
)
from app.ir import ChatCompletion, ChatCompletionChunk, Choice, ChatCompletionMessage, ChoiceDelta, ChunkChoice
from app.router import CircuitBreaker, Route, Router
from tests.unit.conftest import run

USER = [{"role": "user", "content": "hi"}]


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


class Fake:
    """A scripted backend: ``script`` holds exceptions to raise (in order) before answering."""

    def __init__(self, name, *, local=False, max_context=None, script=(), loaded="m", chunks=("a", "b")):
        self.name = name
        self.local = local
        self.max_context = max_context
        self.script = list(script)
        self.loaded = loaded
        self.chunks = chunks
        self.calls = 0

    def capabilities(self, model):
        return Capabilities(local=self.local, max_context=self.max_context, tools="native")

    async def complete(self, request):
        self.calls += 1
        if self.script:
            raise self.script.pop(0)
        msg = ChatCompletionMessage(content=f"from {self.name}")
        return ChatCompletion(id="x", created=0, model="m", choices=(Choice(0, msg, "stop"),), backend=self.name)

    def stream(self, request):
        fake = self

        class S:
            def __init__(self):
                self.items = list(fake.chunks)
                self.closed = False

            async def start(self):
                fake.calls += 1

            async def __anext__(self):
                if fake.script:
                    raise fake.script.pop(0)
                if not self.items:
                    raise StopAsyncIteration
                text = self.items.pop(0)
                if isinstance(text, Exception):
                    raise text
                return ChatCompletionChunk(id="c", created=0, model="m",
                                           choices=(ChunkChoice(0, ChoiceDelta(content=text)),))

            async def stop(self):
                pass

            async def aclose(self):
                self.closed = True

        return S()


def ask(router, **kw):
    return run(Client(router).chat.completions.create(messages=USER, **kw))


def test_priority_with_fallback_on_server_errors():
    a, b = Fake("a", script=[ServerError("boom", status=503)]), Fake("b")
    r = ask(Router([Route(a, priority=0), Route(b, priority=1)]))
    assert r.backend == "b" and r.route == "policy priority, fallback #1"
    assert a.calls == 1 and b.calls == 1


@pytest.mark.parametrize("error", [EngineRejected("bad"), AuthenticationFailed("key")])
def test_no_fallback_on_errors_about_the_request(error):
    a, b = Fake("a", script=[error]), Fake("b")
    with pytest.raises(type(error)):
        ask(Router([Route(a), Route(b, priority=1)]))
    assert b.calls == 0


def test_private_requests_never_leave_the_device():
    cloud = Fake("cloud")
    with pytest.raises(NoBackendAvailable) as info:
        ask(Router([Route(cloud)]), private=True)
    assert cloud.calls == 0 and "private request" in info.value.attempts[0]
    local = Fake("local", local=True)
    assert ask(Router([Route(cloud), Route(local, priority=1)]), private=True).backend == "local"


def test_offline_uses_only_local_backends():
    online = {"value": False}
    cloud, local = Fake("cloud"), Fake("local", local=True)
    router = Router([Route(cloud), Route(local, priority=1)], online=lambda: online["value"])
    r = ask(router)
    assert r.backend == "local" and "offline" in r.route and cloud.calls == 0
    online["value"] = True
    assert ask(router).backend == "cloud"


def test_prefer_local_only_when_its_model_is_loaded():
    cloud, local = Fake("cloud"), Fake("local", local=True, loaded=None)
    router = Router([Route(cloud, priority=1), Route(local, priority=0)], policy="prefer-local")
    assert ask(router).backend == "cloud"
    local.loaded = "m"
    assert ask(router).backend == "local"


def test_cost_and_latency_do_not_trust_untried_backends():
    cheap, pricey, unknown = Fake("cheap"), Fake("pricey"), Fake("unknown")
    router = Router([Route(unknown), Route(pricey, cost_per_1k=2.0), Route(cheap, cost_per_1k=0.1)], policy="cost")
    assert ask(router).backend == "cheap"  # the backend with no declared price is not "free"
    clock = Clock()
    fast, slow = Fake("fast"), Fake("slow")
    router = Router([Route(slow, prior_ttft_s=2.0), Route(fast, prior_ttft_s=0.5), Route(Fake("new"))],
                    policy="latency", clock=clock)
    assert ask(router).backend == "fast"


def test_context_window_fallback():
    small, big = Fake("small", local=True, max_context=16), Fake("big", max_context=100_000)
    router = Router([Route(small), Route(big, priority=1)])
    long_prompt = [{"role": "user", "content": "word " * 200}]
    r = run(Client(router).chat.completions.create(messages=long_prompt))
    assert r.backend == "big" and small.calls == 0
    small.script = [ContextWindowExceeded("too long")]
    assert ask(router).backend == "big"  # the engine's own verdict also falls back


def test_breaker_opens_then_half_opens_after_cooldown():
    clock = Clock()
    flaky = Fake("flaky", script=[BackendUnreachable("down")] * 3)
    backup = Fake("backup")
    router = Router([Route(flaky, breaker=CircuitBreaker(threshold=2, cooldown=10)), Route(backup, priority=1)],
                    clock=clock)
    ask(router), ask(router)
    assert router.routes[0].breaker.state == "open"
    ask(router)
    assert flaky.calls == 2  # skipped while open
    clock.now = 11
    assert router.routes[0].breaker.state == "half-open"
    assert ask(router).backend == "backup" and flaky.calls == 3  # the trial failed: open again
    assert router.routes[0].breaker.state == "open"
    clock.now = 22
    assert ask(router).backend == "flaky"  # recovered
    assert router.routes[0].breaker.state == "closed"


def test_rate_limit_cools_down_for_retry_after():
    clock = Clock()
    limited = Fake("limited", script=[RateLimited("429", retry_after=5)])
    router = Router([Route(limited), Route(Fake("other"), priority=1)], clock=clock)
    assert ask(router).backend == "other"
    clock.now = 4
    assert ask(router).backend == "other"
    clock.now = 5.5
    assert ask(router).backend == "limited"


def test_stream_falls_back_before_the_first_chunk_only():
    a, b = Fake("a", script=[BackendUnreachable("down")]), Fake("b")
    stream = run(Client(Router([Route(a), Route(b, priority=1)])).chat.completions.create(messages=USER, stream=True))
    assert stream.backend == "b"

    async def drain(s):
        return [c.choices[0].delta.content async for c in s]

    assert run(drain(stream)) == ["a", "b"]
    half = Fake("half", chunks=("x", ServerError("mid-stream", status=500)))
    other = Fake("other")
    stream = run(Client(Router([Route(half), Route(other, priority=1)])).chat.completions.create(
        messages=USER, stream=True))
    with pytest.raises(ServerError):
        run(drain(stream))
    assert other.calls == 0  # never replays a half-delivered answer elsewhere


def test_bad_configuration():
    with pytest.raises(UsageError):
        Router([])
    with pytest.raises(UsageError):
        Router([Route(Fake("a"))], policy="fastest")
