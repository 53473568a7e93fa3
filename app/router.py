"""Pick a backend per request, and fall back when it fails, without the user noticing.

    router = Router([Route(local, priority=0), Route(cloud, priority=1, cost_per_1k=0.6)],
                    policy="prefer-local", online=ffi.is_online)
    client = Client(router)
    reply = await client.chat.completions.create(messages=msgs)          # reply.backend, reply.route
    await client.chat.completions.create(messages=msgs, private=True)    # never leaves the device

Policies: ``priority`` (declared order), ``prefer-local`` (an on-device backend with its model
loaded first), ``offline-only`` (on-device backends only; also what happens automatically while the
browser is offline), ``cost`` (price per 1k tokens, on-device = 0) and ``latency`` (the expected time
to answer: rolling time to first token plus ``max_tokens`` at the rolling tokens/s). Backends never
measured are ranked by their declared priors, never as the best.

Fallback happens only where it is safe and useful: on failures that say nothing about the request
(network, 5xx, 429, the local model not available, the prompt too long for that model), and for a
stream only before its first chunk: a half-delivered answer is never replayed elsewhere. A circuit
breaker per backend skips a backend after repeated failures and tries it again after a cooldown;
a 429 cools the backend down for its ``retry_after``. ``await router.check_health()`` probes every
backend cheaply and feeds the same breakers; ``ffi.watch_online(router.connectivity_changed)`` lets
the router react to the browser's online/offline events.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from app.backends.base import Backend, Capabilities
from app.errors import (
    BackendUnreachable,
    AppError,
    ContextWindowExceeded,
    DeviceLost,
    EngineCrashed,
    EngineError,
    FeatureUnsupported,
    ModelFetchFailed,
    ModelNotDownloaded,
    ModelNotFound,
    ModelNotLoaded,
    NoBackendAvailable,
    RateLimited,
    ServerError,
    UsageError,
    VisionUnavailable,
    WebGPUUnavailable,
)
from app.ir import ChatCompletion, ChatCompletionChunk
from app.middleware import redact
from app.params import ChatRequest

POLICIES = ("priority", "prefer-local", "offline-only", "cost", "latency")
EXPECTED_TOKENS = 256  # answer length the latency policy assumes when a request gives no max_tokens
# Failures that say nothing about the request itself: another backend may well succeed.
# FeatureUnsupported: this device cannot do it (shader-f16, no built-in model, a language or schema
# feature the built-in model lacks); another backend may. DeviceLost, EngineCrashed: the local engine
# died (its next request restarts it); another backend can answer this one.
FALLBACK_ERRORS = (BackendUnreachable, ServerError, RateLimited, ModelNotLoaded, ModelNotDownloaded,
                   ModelNotFound, ModelFetchFailed, WebGPUUnavailable, ContextWindowExceeded, FeatureUnsupported,
                   DeviceLost, EngineCrashed)


class CircuitBreaker:
    """closed -> (``threshold`` failures in a row) -> open -> (``cooldown`` s) -> half-open: one trial
    request; success closes, failure opens again. ``rate_limited(s)`` opens it for ``s`` seconds."""

    def __init__(self, *, threshold: int = 3, cooldown: float = 30.0, clock: Callable[[], float] = time.monotonic):
        self.threshold = threshold
        self.cooldown = cooldown
        self._clock = clock
        self.failures = 0
        self._open_until: float | None = None
        self._rate_limited = False

    @property
    def state(self) -> str:
        if self._open_until is None:
            return "closed"
        return "open" if self._clock() < self._open_until else "half-open"

    def allow(self) -> bool:
        return self.state != "open"

    def success(self) -> None:
        self.failures = 0
        self._open_until = None
        self._rate_limited = False

    def trial_now(self) -> None:
        """Half-open an open circuit at once (not one a 429 opened: the endpoint said how long)."""
        if self.state == "open" and not self._rate_limited:
            self._open_until = self._clock()

    def failure(self) -> None:
        self.failures += 1
        if self.failures >= self.threshold or self.state == "half-open":
            self._open_until = self._clock() + self.cooldown

    def rate_limited(self, retry_after: float | None) -> None:
        self.failures += 1
        self._rate_limited = True
        self._open_until = self._clock() + (retry_after if retry_after is not None else self.cooldown)


@dataclass
class Route:
    """A backend and what the router knows of it: declared priority, price and latency priors."""

    backend: Backend
    priority: int = 0
    cost_per_1k: float | None = None  # currency per 1k tokens; None = 0 on-device, unknown (last) otherwise
    prior_ttft_s: float | None = None  # declared time to first token until measured
    prior_tokens_per_s: float | None = None  # declared generation speed until measured
    breaker: CircuitBreaker = field(default_factory=CircuitBreaker)
    ttft_s: float | None = None  # measured, exponentially weighted
    tokens_per_s: float | None = None  # measured on streams after their first chunk, exponentially weighted
    requests: int = 0

    def observe_ttft(self, seconds: float, weight: float = 0.3) -> None:
        self.ttft_s = seconds if self.ttft_s is None else (1 - weight) * self.ttft_s + weight * seconds

    def observe_throughput(self, tokens: int, seconds: float, weight: float = 0.3) -> None:
        if tokens <= 0 or seconds <= 0:
            return
        rate = tokens / seconds
        self.tokens_per_s = rate if self.tokens_per_s is None else (1 - weight) * self.tokens_per_s + weight * rate

    def expected_seconds(self, tokens: int) -> float:
        """Time to answer ``tokens`` tokens: first token, then the rest at its speed. Unknown first-token
        time: infinite (never the fastest untried); unknown speed adds nothing."""
        ttft = self.ttft_s if self.ttft_s is not None else self.prior_ttft_s
        if ttft is None:
            return float("inf")
        speed = self.tokens_per_s if self.tokens_per_s is not None else self.prior_tokens_per_s
        return ttft + (tokens / speed if speed else 0.0)


def _prompt_tokens(request: ChatRequest) -> int:
    """A cheap upper-ish estimate (4 characters per token) to keep over-long prompts off small models."""
    chars = sum(len(m["content"]) if isinstance(m.get("content"), str) else 0 for m in request.messages)
    return chars // 4 + 8 * len(request.messages)


class Router:
    """A Backend that routes each request to one of ``routes``. See the module docstring."""

    name = "router"

    def __init__(self, routes: list[Route], *, policy: str = "priority", online: Callable[[], bool] = lambda: True,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if policy not in POLICIES:
            raise UsageError(f"policy must be one of {', '.join(POLICIES)}, got {policy!r}")
        if not routes:
            raise UsageError("a router needs at least one route")
        self.routes = routes
        self.policy = policy
        self._online = online
        self._clock = clock
        self.online_events = 0  # online/offline events seen (connectivity_changed)
        for route in routes:
            route.breaker._clock = clock

    def capabilities(self, model: str | None) -> Capabilities:
        # The client emulates tools above the router, so say "native" only when every backend is.
        caps = [r.backend.capabilities(model) for r in self.routes]
        tools = "native" if all(c.tools == "native" for c in caps) else "emulated"
        return Capabilities(tools=tools, json_schema=all(c.json_schema for c in caps),
                            local=all(c.local for c in caps), vision=any(c.vision for c in caps))

    # ------------------------------------------------------------------ choosing

    def context_window(self, request: ChatRequest) -> int | None:
        """The most context any route that may serve ``request`` offers, in tokens (None: one of them
        states no limit). A history longer than this fits nowhere: the chat trims it first."""
        windows = [route.backend.capabilities(request.model).max_context
                   for route, _why in self.plan(request, check_context=False)[0]]
        return None if not windows or None in windows else max(windows)  # type: ignore[type-var]

    def plan(self, request: ChatRequest, *, check_context: bool = True) -> tuple[list[tuple[Route, str]], list[str]]:
        """Routes to try in order, each with why; and why the others were skipped."""
        offline = not self._online()
        local_only = self.policy == "offline-only" or offline or request.private
        tokens = _prompt_tokens(request)
        chosen, skipped, too_long = [], [], []
        for route in self.routes:
            name = route.backend.name
            caps = route.backend.capabilities(request.model)
            unavailable = getattr(route.backend, "unavailable", None)
            if unavailable:
                skipped.append(f"{name}: {unavailable}")
                continue
            if local_only and not caps.local:
                why = "private request" if request.private else ("offline" if offline else "offline-only policy")
                skipped.append(f"{name}: not on this device ({why})")
                continue
            if request.images and not caps.vision:
                skipped.append(f"{name}: cannot see images ({request.model or 'its model'} is text-only)")
                continue
            if not route.breaker.allow():
                skipped.append(f"{name}: circuit open after {route.breaker.failures} failure(s)")
                continue
            if check_context and caps.max_context is not None and tokens > caps.max_context:
                too_long.append((route, f"{name}: prompt (~{tokens} tokens) exceeds its context ({caps.max_context})"))
                continue
            chosen.append(route)
        if chosen or not too_long:
            skipped += [why for _route, why in too_long]
        else:  # the estimate is rough: with no route it keeps the prompt off, the engine's own count decides
            chosen = [route for route, _why in too_long]
        ordered = sorted(chosen, key=lambda r: self._rank(r, request))
        return [(r, self._reason(r, request, i)) for i, r in enumerate(ordered)], skipped

    def _rank(self, route: Route, request: ChatRequest) -> tuple:
        caps = route.backend.capabilities(request.model)
        ready = getattr(route.backend, "loaded", True) is not None  # a local engine with a model loaded
        if self.policy == "prefer-local":
            # A local model that must load first goes after the cloud: loading takes minutes.
            return (0 if caps.local and ready else 2 if caps.local else 1, route.priority)
        if self.policy == "cost":
            cost = route.cost_per_1k if route.cost_per_1k is not None else (0.0 if caps.local else float("inf"))
            return (cost, route.priority)
        if self.policy == "latency":
            return (route.expected_seconds(request.params.get("max_tokens") or EXPECTED_TOKENS), route.priority)
        return (route.priority,)

    def _reason(self, route: Route, request: ChatRequest, index: int) -> str:
        base = f"policy {self.policy}"
        if request.private:
            base += ", private"
        elif not self._online():
            base += ", offline"
        return base if index == 0 else f"{base}, fallback #{index}"

    def _failed(self, route: Route, error: EngineError) -> None:
        if isinstance(error, RateLimited):
            route.breaker.rate_limited(error.retry_after)
        elif isinstance(error, (BackendUnreachable, ServerError)):
            route.breaker.failure()

    # ------------------------------------------------------------------ health

    async def check_health(self) -> dict[str, str]:
        """Probe every backend at once with its cheap ``health()`` (an endpoint's model list with a short
        timeout, WebGPU for web-llm, availability for Chrome's model) and feed the circuit breakers:
        a healthy probe closes a circuit, a failed one counts like a failed request.

            await router.check_health()   # {"webllm": "ok", "openai": "BackendUnreachable: ..."}
        """
        async def probe(route: Route) -> str:
            check = getattr(route.backend, "health", None)
            if check is None:
                return "unchecked"
            try:
                await check()
            except RateLimited as error:
                route.breaker.rate_limited(error.retry_after)
                return f"RateLimited: {error}"
            except EngineError as error:
                route.breaker.failure()
                return f"{type(error).__name__}: {error}"
            except AppError as error:  # misconfigured (no saved key, ...): say so, the circuit is not at fault
                return f"{type(error).__name__}: {error}"
            route.breaker.success()
            return "ok"

        results = await asyncio.gather(*(probe(route) for route in self.routes))
        return {route.backend.name: result for route, result in zip(self.routes, results)}

    def connectivity_changed(self, online: bool) -> None:
        """The browser's online/offline event: ``ffi.watch_online(router.connectivity_changed)``.

        Back online, the circuits of off-device backends that failures opened are half-opened at once:
        those failures were most likely the outage, so the next request tries them again instead of
        waiting out the cooldown. (While offline, requests stay local whatever the circuits say.)
        """
        self.online_events += 1
        if not online:
            return
        for route in self.routes:
            if not route.backend.capabilities(None).local:
                route.breaker.trial_now()

    # ------------------------------------------------------------------ requests

    async def complete(self, request: ChatRequest) -> ChatCompletion:
        plan, skipped = self.plan(request)
        tried: list[str] = []
        for route, reason in plan:
            started = self._clock()
            try:
                completion = await route.backend.complete(request)
            except FALLBACK_ERRORS as error:
                self._failed(route, error)
                tried.append(_attempt(route, error))
                continue
            route.breaker.success()
            route.requests += 1
            route.observe_ttft(self._clock() - started)
            return replace(completion, backend=route.backend.name, route=reason)
        raise _no_backend(request, tried, skipped)

    def stream(self, request: ChatRequest) -> RouterStream:
        return RouterStream(self, request)


def _attempt(route: Route, error: Exception) -> str:
    """``"openai: BackendUnreachable (timed out after 30s …)"``: what a route's failure says, short and
    without secrets (an endpoint's error page can be long and quote a key)."""
    text = redact(" ".join(str(error).split()))
    return f"{route.backend.name}: {type(error).__name__}" + (f" ({text[:160]})" if text else "")


def _no_backend(request: ChatRequest, tried: list[str], skipped: list[str]) -> NoBackendAvailable:
    """The typed error for a plan that ran out: VisionUnavailable when images kept every route off."""
    message = _no_backend_message(tried, skipped)
    if request.images and not tried and any("cannot see images" in why for why in skipped):
        return VisionUnavailable(f"{message}. Choose a vision model (e.g. Phi-3.5-vision) or an endpoint "
                                 "that declares vision, or send the message without images",
                                 attempts=tuple(skipped))
    return NoBackendAvailable(message, attempts=tuple(tried + skipped))


def _no_backend_message(tried: list[str], skipped: list[str]) -> str:
    parts = tried + skipped
    return "no backend could serve this request" + (": " + "; ".join(parts) if parts else "")


class RouterStream:
    """Tries routes in order until one yields its first chunk; from then on it is that stream. A stream
    that runs to its end tells its route how many tokens per second came after the first chunk."""

    def __init__(self, router: Router, request: ChatRequest) -> None:
        self._router = router
        self._request = request
        self._inner: Any = None
        self._first: ChatCompletionChunk | None = None
        self._serving: Route | None = None
        self._first_at = 0.0
        self._pieces = 0  # chunks with content after the first: tokens, when no usage says
        self._usage_tokens: int | None = None
        self.served_by = ""
        self.route = ""

    async def start(self) -> None:
        if self._inner is not None:
            return
        plan, skipped = self._router.plan(self._request)
        tried: list[str] = []
        for route, reason in plan:
            started = self._router._clock()
            inner = None
            try:
                inner = route.backend.stream(self._request)
                await inner.start()
                first = await inner.__anext__()
            except StopAsyncIteration:
                first = None
            except FALLBACK_ERRORS as error:
                if inner is not None:
                    await inner.aclose()
                self._router._failed(route, error)
                tried.append(_attempt(route, error))
                continue
            except BaseException:  # another error, or the caller gave up (Stop before the first token)
                if inner is not None:
                    with contextlib.suppress(Exception):  # its cleanup must not hide why we stopped
                        await asyncio.shield(inner.aclose())
                raise
            route.breaker.success()
            route.requests += 1
            self._first_at = self._router._clock()
            route.observe_ttft(self._first_at - started)
            self._inner, self._first, self._serving = inner, first, route
            self.served_by, self.route = route.backend.name, reason
            return
        raise _no_backend(self._request, tried, skipped)

    def __aiter__(self) -> RouterStream:
        return self

    async def __anext__(self) -> ChatCompletionChunk:
        await self.start()
        if self._first is not None:
            first, self._first = self._first, None
            self._count(first)
            return first
        try:
            chunk = await self._inner.__anext__()
        except StopAsyncIteration:
            self._observe_end()
            raise
        self._count(chunk)
        self._pieces += any(c.delta.content for c in chunk.choices)
        return chunk

    def _count(self, chunk: ChatCompletionChunk) -> None:
        if chunk.usage is not None:
            self._usage_tokens = chunk.usage.completion_tokens
        if any(c.finish_reason == "abort" for c in chunk.choices):
            self._serving = None  # stopped early: its pace says nothing

    def _observe_end(self) -> None:
        if self._serving is not None:
            # The first chunk is about one token, and its time is the time to first token.
            tokens = self._usage_tokens - 1 if self._usage_tokens is not None else self._pieces
            self._serving.observe_throughput(tokens, self._router._clock() - self._first_at)
            self._serving = None

    async def stop(self) -> None:
        if self._inner is not None:
            await self._inner.stop()

    async def aclose(self) -> None:
        if self._inner is not None:
            await self._inner.aclose()
