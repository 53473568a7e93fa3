"""The engine double at the JavaScript level: web-llm's own page-side WebWorkerMLCEngine talking to
the test build of the worker (tests/browser/double/), as the app does. Everything a user would
see — replies, streams, usage, stop, errors — comes through web-llm's real worker protocol.
"""

from __future__ import annotations

import json

import pytest

from tests.browser.conftest import open_app
from tests.browser.double import (
    CHAT_MODEL,
    FAIL_DEVICE_MODEL,
    FAIL_F16_MODEL,
    FAIL_NETWORK_MODEL,
    FAIL_QUOTA_MODEL,
    OVERLAY,
    SLOW_MODEL,
    TINY_CONTEXT_MODEL,
    TOOLS_MODEL,
    app_config,
)

# window.__double: a fresh worker + web-llm's WebWorkerMLCEngine for each test; rejections from the
# worker are strings (web-llm sends err.toString()), `rejection()` returns them.
HELPERS = """
window.__double = {
  async engine(appConfig) {
    const webllm = await import(new URL("static/vendor/web-llm/index.js", document.baseURI).href);
    const worker = new Worker(new URL("static/webllm-worker.js", document.baseURI), { type: "module" });
    const progress = [];
    const engine = new webllm.WebWorkerMLCEngine(worker, { appConfig, initProgressCallback: (r) => progress.push(r) });
    engine.progress = progress;
    return engine;
  },
  async rejection(promise) {
    try { await promise; return null; } catch (error) { return String(error); }
  },
  async collect(stream, onChunk) {
    const chunks = [];
    for await (const chunk of stream) { chunks.push(chunk); if (onChunk) await onChunk(chunks); }
    return chunks;
  },
};
"""

USER = "(text) => [{ role: 'user', content: text }]"


@pytest.fixture(scope="module")
def double_site(serve):
    return serve("/", overlay=OVERLAY)


@pytest.fixture(scope="module")
def app_page(browser, double_site):
    context = browser.new_context()
    page = context.new_page()
    watch = open_app(page, double_site)
    page.evaluate(HELPERS)
    yield page, watch
    context.close()


@pytest.fixture
def run(app_page, double_site):
    """run(js) runs the body of an async function with `e` (engine), `d` (helpers), `user(text)`."""
    page, watch = app_page
    config = app_config(double_site.origin)

    def run(body: str):
        result = page.evaluate(
            "async ([config, models]) => { const d = window.__double; const e = await d.engine(config);"
            f" const user = {USER}; const M = models;"
            f" try {{ {body} }} finally {{ e.worker.terminate(); }} }}",
            [config, MODELS])
        return result

    yield run
    assert watch.foreign == [], f"requests left the test server: {watch.foreign}"
    assert watch.errors == [], f"the page logged errors: {watch.errors}"


MODELS = {"chat": CHAT_MODEL, "tiny": TINY_CONTEXT_MODEL, "tools": TOOLS_MODEL, "slow": SLOW_MODEL,
          "network": FAIL_NETWORK_MODEL, "quota": FAIL_QUOTA_MODEL, "device": FAIL_DEVICE_MODEL,
          "f16": FAIL_F16_MODEL}


def test_reply_content_usage_and_load_progress(run):
    out = run("""
      await e.reload(M.chat);
      const reply = await e.chat.completions.create({ messages: user("hello world") });
      return { reply, progress: e.progress };
    """)
    choice = out["reply"]["choices"][0]
    assert choice["message"] == {"role": "assistant", "content": "Echo: hello world"}
    assert choice["finish_reason"] == "stop"
    # 2 words + template (see engine_double.js); 3 visible tokens + the stop token web-llm counts.
    assert {k: out["reply"]["usage"][k] for k in ("prompt_tokens", "completion_tokens", "total_tokens")} == \
        {"prompt_tokens": 11, "completion_tokens": 4, "total_tokens": 15}
    assert out["reply"]["model"] == CHAT_MODEL
    assert out["progress"][-1]["progress"] == 1
    assert out["progress"][-1]["text"].startswith("Finish loading on WebGPU")


def test_stream_gives_chunks_then_a_usage_chunk(run):
    chunks = run("""
      await e.reload(M.chat);
      const stream = await e.chat.completions.create({
        messages: user("[[tokens=5]]"), stream: true, stream_options: { include_usage: true } });
      return await d.collect(stream);
    """)
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "t0 t1 t2 t3 t4"
    assert sum(1 for c in chunks if c["choices"] and c["choices"][0]["delta"].get("content")) == 5
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["completion_tokens"] == 6
    assert chunks[-1]["usage"]["prompt_tokens"] == 10


def test_interrupt_mid_stream_aborts_and_next_request_works(run):
    out = run("""
      await e.reload(M.chat);
      const stream = await e.chat.completions.create({ messages: user("[[tokens=200]] [[delay=20]]"), stream: true });
      const chunks = await d.collect(stream, async (got) => { if (got.length === 3) e.interruptGenerate(); });
      const next = await e.chat.completions.create({ messages: user("again") });
      return { chunks, next };
    """)
    chunks = out["chunks"]
    assert chunks[-1]["choices"][0]["finish_reason"] == "abort"
    assert 3 <= len(chunks) < 20
    assert out["next"]["choices"][0]["message"]["content"] == "Echo: again"
    assert out["next"]["choices"][0]["finish_reason"] == "stop"


def test_max_tokens_and_stop_strings(run):
    out = run("""
      await e.reload(M.chat);
      const long = await e.chat.completions.create({ messages: user("one two three four"), max_tokens: 2 });
      const stopped = await e.chat.completions.create({ messages: user("one two three four"), stop: ["three"] });
      return { long, stopped };
    """)
    assert out["long"]["choices"][0]["message"]["content"] == "Echo: one "
    assert out["long"]["choices"][0]["finish_reason"] == "length"
    assert out["long"]["usage"]["completion_tokens"] == 2
    assert out["stopped"]["choices"][0]["message"]["content"] == "Echo: one two "
    assert out["stopped"]["choices"][0]["finish_reason"] == "stop"


def test_json_schema_reply_validates(run):
    schema = {"type": "object", "properties": {
        "name": {"type": "string"}, "age": {"type": "integer", "minimum": 18},
        "tags": {"type": "array", "items": {"enum": ["a", "b"]}},
        "pet": {"$ref": "#/$defs/Pet"}, "note": {"anyOf": [{"type": "string"}, {"type": "null"}]}},
        "required": ["name", "age"], "$defs": {"Pet": {"type": "object", "properties": {
            "kind": {"type": "string", "enum": ["cat", "dog"]}, "good": {"type": "boolean"}}}}}
    reply = run(f"""
      await e.reload(M.chat);
      return await e.chat.completions.create({{ messages: user("describe"),
        response_format: {{ type: "json_object", schema: {json.dumps(json.dumps(schema))} }} }});
    """)
    assert json.loads(reply["choices"][0]["message"]["content"]) == {
        "name": "x", "age": 18, "tags": ["a"], "pet": {"kind": "cat", "good": True}, "note": "x"}


def test_native_tools_give_tool_calls(run):
    tools = [{"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}},
             {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
              "parameters": {"type": "object", "properties": {"city": {"type": "string"},
                             "unit": {"type": "string", "enum": ["C", "F"]}}, "required": ["city"]}}}]
    out = run(f"""
      const tools = {json.dumps(tools)};
      await e.reload(M.tools);
      const reply = await e.chat.completions.create({{ messages: user("use get_weather please"), tools }});
      await e.reload(M.chat);
      const refused = await d.rejection(e.chat.completions.create({{ messages: user("hi"), tools }}));
      return {{ reply, refused }};
    """)
    choice = out["reply"]["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["tool_calls"] == [{"id": "0", "type": "function", "function": {
        "name": "get_weather", "arguments": json.dumps({"city": "x", "unit": "C"}, separators=(",", ":"))}}]
    assert out["refused"].startswith("UnsupportedModelIdError:")


def test_two_concurrent_requests_are_served_in_turn(run):
    out = run("""
      await e.reload(M.chat);
      const a = e.chat.completions.create({ messages: user("first [[delay=10]]") });
      const b = e.chat.completions.create({ messages: user("second [[delay=10]]") });
      return (await Promise.all([a, b])).map((r) => r.choices[0].message.content);
    """)
    assert out == ["Echo: first", "Echo: second"]


def test_errors_surface_with_web_llm_text(run):
    out = run("""
      const r = {};
      r.unknown = await d.rejection(e.reload("Nope-q4f32_1-MLC"));
      r.network = await d.rejection(e.reload(M.network));
      r.quota = await d.rejection(e.reload(M.quota));
      r.f16 = await d.rejection(e.reload(M.f16));
      r.deviceAtLoad = await d.rejection(e.reload(M.device));
      await e.reload(M.tiny);
      r.context = await d.rejection(e.chat.completions.create({ messages: user("w ".repeat(40)) }));
      r.afterContext = (await e.chat.completions.create({ messages: user("hi") })).choices[0].message.content;
      r.invalid = await d.rejection(e.chat.completions.create({ messages: user("hi"), max_tokens: 0 }));
      await e.reload(M.chat);
      r.deviceLost = await d.rejection(e.chat.completions.create({ messages: user("[[throw=DeviceLostError]]") }));
      r.afterDeviceLost = await d.rejection(e.chat.completions.create({ messages: user("hi") }));
      return r;
    """)
    assert out["unknown"].startswith("ModelNotFoundError: Cannot find model record in appConfig for Nope-q4f32_1-MLC")
    assert out["network"] == "TypeError: Failed to fetch"
    assert out["quota"] == "QuotaExceededError: Quota exceeded."
    assert out["f16"].startswith("ShaderF16SupportError: This model requires WebGPU extension shader-f16")
    assert out["deviceAtLoad"].startswith("DeviceLostError: The WebGPU device was lost")
    assert out["context"].startswith("ContextWindowSizeExceededError: Prompt tokens exceed context window size: "
                                     "number of prompt tokens: 49; context window size: 32")
    assert out["afterContext"] == "Echo: hi"
    assert out["invalid"].startswith("MinValueError:")
    assert out["deviceLost"].startswith("DeviceLostError: The WebGPU device was lost")
    assert out["afterDeviceLost"].startswith("ModelNotLoadedError:")


def test_unload_and_aborted_reload(run):
    out = run("""
      await e.reload(M.chat);
      await e.unload();
      const afterUnload = await d.rejection(e.chat.completions.create({ messages: user("hi") }));
      const slow = d.rejection(e.reload(M.slow));
      await new Promise((r) => setTimeout(r, 300));
      await e.unload();
      const aborted = await slow;
      await e.reload(M.chat);
      const again = (await e.chat.completions.create({ messages: user("back") })).choices[0].message.content;
      return { afterUnload, aborted, again };
    """)
    assert out["afterUnload"] is not None
    assert out["aborted"] == "Engine.unload() is called."
    assert out["again"] == "Echo: back"
