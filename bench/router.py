#!/usr/bin/env python3
"""Cost of the router and middleware per request, and time to fail over, under CPython.

    python3 bench/router.py [--requests 20000]

In-memory backends that answer at once, so the figures are the Python overhead alone (the time a
real engine or network takes comes on top and is unchanged). Prints microseconds per request for:
the backend called directly, through Client, through Client + Router, and through Client + the
middleware stack + Router; and the time to answer when the preferred backend fails at once
(circuit closed) and when its circuit is open.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.backends.base import Capabilities  # noqa: E402
from app.client import Client  # noqa: E402
from app.errors import BackendUnreachable  # noqa: E402
from app.ir import ChatCompletion, ChatCompletionMessage, Choice  # noqa: E402
from app.middleware import Logging, Retry, Telemetry, Timeout, build_stack  # noqa: E402
from app.params import ChatRequest  # noqa: E402
from app.router import CircuitBreaker, Route, Router  # noqa: E402

ANSWER = ChatCompletion(id="x", created=0, model="m",
                        choices=(Choice(0, ChatCompletionMessage(content="ok"), "stop"),))
MESSAGES = [{"role": "user", "content": "hello"}]


class Instant:
    def __init__(self, name: str, fail: bool = False):
        self.name = name
        self.fail = fail

    def capabilities(self, model):
        return Capabilities(local=False)

    async def complete(self, request):
        if self.fail:
            raise BackendUnreachable("down")
        return ANSWER

    def stream(self, request):
        raise NotImplementedError


async def per_request_us(call, n: int) -> float:
    for _ in range(200):  # warm-up
        await call()
    samples = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(n // 5):
            await call()
        samples.append((time.perf_counter() - t0) / (n // 5) * 1e6)
    return statistics.median(samples)


async def main_async(n: int) -> None:
    backend = Instant("b")
    request = ChatRequest.build(messages=MESSAGES)
    router = Router([Route(backend)])
    stack = build_stack(router, [partial(Telemetry, emit=lambda e: None), partial(Logging, log=lambda s: None),
                                 Retry, partial(Timeout, seconds=60)])
    rows = {
        "backend.complete(request)": lambda: backend.complete(request),
        "Client(backend)": lambda: Client(backend).chat.completions.create(messages=MESSAGES),
        "Client(Router)": lambda: Client(router).chat.completions.create(messages=MESSAGES),
        "Client(middleware + Router)": lambda: Client(stack).chat.completions.create(messages=MESSAGES),
    }
    results = {name: await per_request_us(call, n) for name, call in rows.items()}
    base = results["Client(backend)"]
    print(f"per request, median of 5 x {n // 5}, Python {sys.version.split()[0]}")
    for name, us in results.items():
        print(f"  {name:<30}{us:>9.1f} us   x{us / base:.2f} of Client(backend)")

    down, up = Instant("down", fail=True), Instant("up")
    failover = Router([Route(down, breaker=CircuitBreaker(threshold=10**9)), Route(up, priority=1)])
    opened = Router([Route(down, breaker=CircuitBreaker(threshold=1, cooldown=1e9)), Route(up, priority=1)])
    await Client(opened).chat.completions.create(messages=MESSAGES)  # opens the circuit
    for name, router_ in (("failover, circuit closed", failover), ("failover, circuit open", opened)):
        us = await per_request_us(lambda r=router_: Client(r).chat.completions.create(messages=MESSAGES), n)
        print(f"  {name:<30}{us:>9.1f} us   (+{us - results['Client(Router)']:.1f} us over a healthy route)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20000)
    asyncio.run(main_async(parser.parse_args().requests))
    return 0


if __name__ == "__main__":
    sys.exit(main())
