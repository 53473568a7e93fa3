#!/usr/bin/env python3
"""Cost of the router and middleware per request, and time to fail over: under CPython, then in Chromium.

    python3 bench/router.py [--requests 20000] [--runs 25] [--no-browser] [--short]

CPython: in-memory backends that answer at once, so the figures are the Python overhead alone (the
time a real engine or network takes comes on top and is unchanged). Prints microseconds per request
for: the backend called directly, through Client, through Client + Router, and through Client + the
middleware stack + Router; and the time to answer when the preferred backend fails at once (circuit
closed) and when its circuit is open.

Browser: the built app in Chromium, real fetch. The preferred backend is an OpenAI-compatible endpoint
on a dead port of 127.0.0.1 (connection refused), the fallback a tiny local HTTP server answering at
once. Prints the median of ``--runs`` requests, in milliseconds: the fallback called directly, through
a router whose preferred backend is dead (circuit closed: the failed fetch is paid each time), and with
that circuit open (skipped).
"""

from __future__ import annotations

import argparse
import asyncio
import http.server
import json
import statistics
import sys
import threading
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


ANSWER_JSON = json.dumps({"id": "x", "object": "chat.completion", "created": 0, "model": "m",
                          "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"},
                                       "finish_reason": "stop"}]}).encode()


class Answering(http.server.BaseHTTPRequestHandler):
    """An OpenAI-compatible endpoint that answers every chat request at once (CORS allowed)."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go as separate writes: no 40 ms delayed-ACK stall

    def _cors(self) -> None:
        self.send_header("Access-Control-Allow-Origin", "*")
        self.send_header("Access-Control-Allow-Headers", "content-type, authorization")
        self.send_header("Access-Control-Allow-Methods", "POST, GET")

    def do_OPTIONS(self) -> None:  # noqa: N802
        self.send_response(204)
        self._cors()
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self._cors()
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(ANSWER_JSON)))
        self.end_headers()
        self.wfile.write(ANSWER_JSON)

    def log_message(self, *args) -> None:
        pass


BROWSER_RUN = """
import statistics, time
async def timed(client, runs):
    await client.chat.completions.create(messages=MSGS)  # warm-up (and opens a threshold-1 circuit)
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        r = await client.chat.completions.create(messages=MSGS)
        samples.append((time.perf_counter() - t0) * 1000)
        assert r.choices[0].message.content == "ok"
    return statistics.median(samples)
[await timed(Client(up), {runs}), await timed(Client(closed), {runs}), await timed(Client(opened), {runs})]
"""


def browser_failover(runs: int) -> None:
    from playwright.sync_api import sync_playwright

    import build
    from tests.browser.conftest import CHROMIUM, QUIET_FLAGS, PagePython, free_port

    dist = build.build()
    site = build.make_server(dist)
    build.start_in_thread(site)
    endpoint = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Answering)
    threading.Thread(target=endpoint.serve_forever, daemon=True).start()
    up, dead = f"http://127.0.0.1:{endpoint.server_address[1]}/v1", f"http://127.0.0.1:{free_port()}/v1"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=QUIET_FLAGS)
        page = browser.new_page()
        page.goto(f"http://127.0.0.1:{site.server_address[1]}/")
        page.wait_for_selector("body[data-state=ready]", timeout=60_000)
        py = PagePython(page)
        py(f"""
from app.client import Client
from app.router import CircuitBreaker, Route, Router
from app.backends.openai_compat import OpenAICompatBackend
MSGS = [{{"role": "user", "content": "hello"}}]
up = OpenAICompatBackend(base_url={up!r}, model="m", name="up")
dead = OpenAICompatBackend(base_url={dead!r}, model="m", name="dead")
closed = Router([Route(dead, breaker=CircuitBreaker(threshold=10**9)), Route(up, priority=1)])
opened = Router([Route(dead, breaker=CircuitBreaker(threshold=1, cooldown=1e9)), Route(up, priority=1)])
""")
        direct, failover, skipped = py(BROWSER_RUN.format(runs=runs), timeout_ms=600_000)
        version = browser.version
        browser.close()
    endpoint.shutdown()
    site.shutdown()
    from bench._report import environment, print_environment

    print_environment(environment(dist, version))
    print(f"in Chromium {version}, real fetch, median of {runs} requests")
    print(f"  {'fallback endpoint directly':<30}{direct:>9.2f} ms")
    print(f"  {'dead port first, circuit closed':<30}{failover:>9.2f} ms   ({failover - direct:+.2f} ms to fail over)")
    print(f"  {'dead port first, circuit open':<30}{skipped:>9.2f} ms   ({skipped - direct:+.2f} ms)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--runs", type=int, default=25, help="requests per browser figure")
    parser.add_argument("--no-browser", action="store_true", help="CPython figures only")
    parser.add_argument("--short", action="store_true", help="a quick check that it runs (CI): 500 requests, 5 runs")
    args = parser.parse_args()
    if args.short:
        args.requests, args.runs = 500, 5
    asyncio.run(main_async(args.requests))
    if not args.no_browser:
        browser_failover(args.runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
