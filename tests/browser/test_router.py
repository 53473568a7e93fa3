"""The router in the page, choosing between web-llm (engine double) and a real llama.cpp server."""

from __future__ import annotations

import json

import pytest

from tests.browser.conftest import API_KEY, QUIET_FLAGS, LlamaServer, PagePython, PyError, open_app
from tests.browser.double import CHAT_MODEL, OVERLAY, app_config


@pytest.fixture(scope="session")
def double_site(serve):
    return serve("/", overlay=OVERLAY)


def setup(py, origin: str, cloud: str, *, load_local: bool, policy: str = "priority") -> None:
    py(f"""
import json
from app import ffi
from app.client import Client
from app.router import Route, Router, CircuitBreaker
from app.backends.webllm import WebLLMBackend
from app.backends.openai_compat import OpenAICompatBackend

class Clock:
    now = 0.0
    def __call__(self):
        return self.now

clock = Clock()
local = WebLLMBackend(app_config=json.loads({json.dumps(json.dumps(app_config(origin)))}))
# The server is on loopback here; it stands for a cloud endpoint, so it is not "on this device".
cloud = OpenAICompatBackend(preset="llamacpp", base_url={cloud + '/v1'!r}, api_key={API_KEY!r}, model="smollm2",
                            on_device=False)
if {load_local!r}:
    await local.load({CHAT_MODEL!r})
router = Router([Route(local, priority=0), Route(cloud, priority=1, breaker=CircuitBreaker(threshold=2, cooldown=30))],
                policy={policy!r}, online=ffi.is_online, clock=clock)
client = Client(router)
USER = lambda text: [{{"role": "user", "content": text}}]
""")


def test_without_webgpu_the_answer_comes_from_the_server(launch_chromium, double_site, llama):
    page = launch_chromium(QUIET_FLAGS).new_page()  # no WebGPU here
    watch = open_app(page, double_site, allowed=(llama.origin,))
    py = PagePython(page)
    setup(py, double_site.origin, llama.origin, load_local=False)
    got = py("""
try:
    await local.load(%r)
except Exception as e:
    load_error = type(e).__name__
s = await client.chat.completions.create(messages=USER("Count from one to five."), stream=True, max_tokens=16,
                                         temperature=0)
pieces = [c.choices[0].delta.content async for c in s if c.choices and c.choices[0].delta.content]
[load_error, s.backend, s.route, len(pieces) > 1, bool(s.content)]
""" % CHAT_MODEL, timeout_ms=120_000)
    assert got == ["WebGPUUnavailable", "llamacpp", "policy priority, fallback #1", True, True]
    assert watch.foreign == []


def test_server_down_opens_the_circuit_then_recovers(page, double_site, tmp_path):
    server = LlamaServer(tmp_path).start()
    try:
        open_app(page, double_site, allowed=(server.origin,))
        py = PagePython(page)
        setup(py, double_site.origin, server.origin, load_local=True)
        py("router.routes[0].priority = 5")  # cloud first, local as the fallback
        assert py('(await client.chat.completions.create(messages=USER("hi"), max_tokens=4)).backend') == "llamacpp"
        server.stop()
        got = py("""
served = []
for _ in range(3):
    r = await client.chat.completions.create(messages=USER("again"), max_tokens=4)
    served.append(r.backend)
[served, router.routes[1].breaker.state]
""", timeout_ms=60_000)
        assert got == [["webllm", "webllm", "webllm"], "open"]
        seen_while_open = server.requests_seen()
        server.start()  # same port
        assert py('(await client.chat.completions.create(messages=USER("x"), max_tokens=4)).backend') == "webllm"
        assert server.requests_seen() == seen_while_open  # circuit open: not even tried
        py("clock.now += 31")  # the cooldown passes (the router's clock is injected)
        assert py('(await client.chat.completions.create(messages=USER("y"), max_tokens=4)).backend') == "llamacpp"
        assert py("router.routes[1].breaker.state") == "closed"
    finally:
        server.stop()


def test_offline_no_request_reaches_the_server(page, double_site, llama):
    open_app(page, double_site, allowed=(llama.origin,))
    py = PagePython(page)
    setup(py, double_site.origin, llama.origin, load_local=True)
    py("router.routes[0].priority = 5")  # the server would be first choice
    before = llama.requests_seen()
    page.context.set_offline(True)
    try:
        got = py("""
r = await client.chat.completions.create(messages=USER("offline?"))
[r.backend, r.route, r.choices[0].message.content]
""")
    finally:
        page.context.set_offline(False)
    assert got == ["webllm", "policy priority, offline", "Echo: offline?"]
    assert llama.requests_seen() == before


def test_private_request_without_local_model_is_refused_and_never_sent(page, double_site, llama):
    open_app(page, double_site, allowed=(llama.origin,))
    py = PagePython(page)
    setup(py, double_site.origin, llama.origin, load_local=False)
    before = llama.requests_seen()
    with pytest.raises(PyError) as info:
        py('await client.chat.completions.create(messages=USER("my secret"), private=True)')
    assert info.value.type == "NoBackendAvailable"
    assert "private request" in info.value.message
    assert llama.requests_seen() == before


def wait_until(py, expression: str, expected, timeout_s: float = 10.0):
    """Poll a Python expression in the page until it equals ``expected`` (an event's effect)."""
    import time

    deadline = time.monotonic() + timeout_s
    while (value := py(expression)) != expected:
        assert time.monotonic() < deadline, f"{expression} stayed {value!r}, expected {expected!r}"
    return value


def test_health_checks_open_and_close_the_circuit_without_a_user_request(page, double_site, tmp_path):
    server = LlamaServer(tmp_path).start()
    try:
        open_app(page, double_site, allowed=(server.origin,))
        py = PagePython(page)
        setup(py, double_site.origin, server.origin, load_local=True)
        py("router.routes[0].priority = 5")  # cloud first
        assert py("await router.check_health()") == {"webllm": "ok", "llamacpp": "ok"}
        server.stop()
        got = py("[await router.check_health(), await router.check_health()][-1]")
        assert got["webllm"] == "ok" and got["llamacpp"].startswith("BackendUnreachable: ")
        assert py("router.routes[1].breaker.state") == "open"  # threshold 2, two failed probes
        seen = server.requests_seen()
        assert py('(await client.chat.completions.create(messages=USER("hi"), max_tokens=4)).backend') == "webllm"
        server.start()  # same port; the router's clock has not moved, so no cooldown has passed
        assert py("(await router.check_health())['llamacpp']") == "ok"
        assert py("router.routes[1].breaker.state") == "closed"
        assert py('(await client.chat.completions.create(messages=USER("hi"), max_tokens=4)).backend') == "llamacpp"
        assert server.requests_seen() == seen + 1  # the probes were GET /models, not chat requests
    finally:
        server.stop()


def test_online_event_retries_the_cloud_at_once(page, double_site, llama):
    open_app(page, double_site, allowed=(llama.origin,))
    py = PagePython(page)
    setup(py, double_site.origin, llama.origin, load_local=True)
    py("""
from app.errors import BackendUnreachable
router.routes[0].priority = 5  # cloud first
stop_watching = ffi.watch_online(router.connectivity_changed)
for _ in range(2):  # the cloud failed twice while the network was going down: its circuit opened
    router._failed(router.routes[1], BackendUnreachable("Failed to fetch"))
""")
    assert py("router.routes[1].breaker.state") == "open"
    page.context.set_offline(True)
    try:
        wait_until(py, "router.online_events", 1)
        r = py('r = await client.chat.completions.create(messages=USER("x"), max_tokens=4); [r.backend, r.route]')
        assert r == ["webllm", "policy priority, offline"]
    finally:
        page.context.set_offline(False)
    wait_until(py, "router.online_events", 2)
    assert py("router.routes[1].breaker.state") == "half-open"  # no cooldown waited (the clock is frozen)
    assert py('(await client.chat.completions.create(messages=USER("y"), max_tokens=4)).backend') == "llamacpp"
    py("stop_watching()")
