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
    VisionUnavailable,
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

    def __init__(self, name, *, local=False, max_context=None, script=(), loaded="m", chunks=("a", "b"),
                 vision=False):
        self.name = name
        self.vision = vision
        self.local = local
        self.max_context = max_context
        self.script = list(script)
        self.loaded = loaded
        self.chunks = chunks
        self.calls = 0

    def capabilities(self, model):
        return Capabilities(local=self.local, max_context=self.max_context, tools="native", vision=self.vision)

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


def test_a_prompt_the_estimate_finds_too_long_for_every_route_goes_to_the_engine_which_counts():
    # The chat fits its history by the engine's own counts; the router's rough estimate may be larger.
    only = Fake("only", local=True, max_context=16)
    router = Router([Route(only)])
    r = run(Client(router).chat.completions.create(messages=[{"role": "user", "content": "word " * 20}]))
    assert r.backend == "only" and only.calls == 1


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


class Paced(Fake):
    """A streaming backend whose first chunk takes ``ttft`` and each later chunk ``1 / rate`` seconds
    of the injected clock."""

    def __init__(self, name, clock, *, ttft, rate, **kw):
        super().__init__(name, chunks=tuple("t" for _ in range(11)), **kw)
        self.clock, self.ttft, self.rate = clock, ttft, rate

    def stream(self, request):
        inner, paced = super().stream(request), self

        class S:
            first = True

            async def start(self):
                await inner.start()

            async def __anext__(self):
                chunk = await inner.__anext__()  # the end comes at once
                paced.clock.now += paced.ttft if S.first else 1 / paced.rate
                S.first = False
                return chunk

            async def stop(self):
                pass

            async def aclose(self):
                pass

        return S()


def drain_stream(router, **kw):
    async def go():
        s = await Client(router).chat.completions.create(messages=USER, stream=True, **kw)
        return s.backend, [c async for c in s]

    return run(go())


def test_latency_counts_time_to_first_token_and_tokens_per_second():
    clock = Clock()
    quick_start = Paced("quick-start", clock, ttft=0.1, rate=10)  # answers at once, then slowly
    fast_gen = Paced("fast-gen", clock, ttft=0.5, rate=100)  # takes a moment, then fast
    quick, fast = Route(quick_start), Route(fast_gen, priority=1)
    for route in (quick, fast):  # each serves one stream to its end, alone
        drain_stream(Router([route], policy="latency", clock=clock))
    router = Router([quick, fast], policy="latency", clock=clock)
    assert quick.ttft_s == pytest.approx(0.1) and fast.ttft_s == pytest.approx(0.5)
    assert quick.tokens_per_s == pytest.approx(10) and fast.tokens_per_s == pytest.approx(100)
    assert drain_stream(router, max_tokens=2)[0] == "quick-start"  # 0.1 + 0.2 s beats 0.5 + 0.02 s
    assert drain_stream(router, max_tokens=200)[0] == "fast-gen"  # 0.5 + 2 s beats 0.1 + 20 s
    assert drain_stream(router)[0] == "fast-gen"  # no max_tokens: a typical answer length is assumed


def test_a_stream_stopped_early_says_nothing_about_speed():
    clock = Clock()
    backend = Paced("p", clock, ttft=0.1, rate=10)
    backend.chunks = ("a", "b", "c")
    router = Router([Route(backend)], policy="latency", clock=clock)

    async def stop_early():
        s = await Client(router).chat.completions.create(messages=USER, stream=True)
        await s.aclose()

    run(stop_early())
    assert router.routes[0].tokens_per_s is None and router.routes[0].ttft_s == pytest.approx(0.1)


class Probed(Fake):
    def __init__(self, name, *, error=None, **kw):
        super().__init__(name, **kw)
        self.error = error
        self.probes = 0

    async def health(self):
        self.probes += 1
        if self.error is not None:
            raise self.error


def test_health_checks_feed_the_breakers():
    clock = Clock()
    down = Probed("down", error=BackendUnreachable("no answer"))
    limited = Probed("limited", error=RateLimited("429", retry_after=60))
    router = Router([Route(down, breaker=CircuitBreaker(threshold=2, cooldown=10)), Route(limited),
                     Route(Probed("up"), priority=1), Route(Fake("plain"), priority=2)], clock=clock)
    first = run(router.check_health())
    assert first == {"down": "BackendUnreachable: no answer", "limited": "RateLimited: 429", "up": "ok",
                     "plain": "unchecked"}
    run(router.check_health())
    assert [r.breaker.state for r in router.routes] == ["open", "open", "closed", "closed"]
    assert ask(router).backend == "up" and down.calls == 0  # no user request paid for finding out
    down.error = None
    clock.now = 10
    assert run(router.check_health())["down"] == "ok"  # a healthy probe closes the circuit
    assert router.routes[0].breaker.state == "closed" and ask(router).backend == "down"


def test_back_online_retries_cloud_circuits_at_once_but_not_rate_limited_ones():
    clock = Clock()
    cloud, limited, local = Fake("cloud"), Fake("limited"), Fake("local", local=True)
    router = Router([Route(cloud, breaker=CircuitBreaker(threshold=1, cooldown=300)), Route(limited),
                     Route(local, priority=1)], clock=clock)
    router.routes[0].breaker.failure()
    router.routes[1].breaker.rate_limited(120)
    local_breaker = router.routes[2].breaker
    local_breaker.threshold = 1
    local_breaker.failure()
    router.connectivity_changed(False)
    assert [r.breaker.state for r in router.routes] == ["open", "open", "open"]
    router.connectivity_changed(True)
    assert [r.breaker.state for r in router.routes] == ["half-open", "open", "open"]
    assert ask(router).backend == "cloud" and router.online_events == 2


PNG = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYGD4DwABBAEAwS2OUAAAAABJRU5ErkJggg=="
WITH_IMAGE = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": PNG}},
                                           {"type": "text", "text": "what is this?"}]}]


def test_an_image_goes_only_to_a_backend_that_sees_images():
    text_only, sees = Fake("text", local=True), Fake("vision", vision=True)
    router = Router([Route(text_only), Route(sees, priority=1)])
    reply = run(Client(router).chat.completions.create(messages=WITH_IMAGE))
    assert reply.backend == "vision" and text_only.calls == 0
    assert ask(router).backend == "text"  # text still goes by priority


def test_no_backend_that_sees_images_is_a_typed_error_that_says_why():
    text_only = Fake("webllm", local=True)
    with pytest.raises(VisionUnavailable, match="cannot see images") as info:
        run(Client(Router([Route(text_only)])).chat.completions.create(model="Llama-1B", messages=WITH_IMAGE))
    assert text_only.calls == 0 and info.value.attempts == ("webllm: cannot see images (Llama-1B is text-only)",)
    with pytest.raises(VisionUnavailable):  # streaming says the same before anything runs
        async def first():
            stream = await Client(Router([Route(text_only)])).chat.completions.create(messages=WITH_IMAGE, stream=True)
            async for _chunk in stream:
                pass
        run(first())
    assert text_only.calls == 0
