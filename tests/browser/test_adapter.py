"""The Python client over the real web-llm worker path, with only model execution replaced.

The engine worker is the test build in tests/browser/double/: web-llm's real handler,
MLCEngine, validation, streaming and errors, with a deterministic fake pipeline in place of a
compiled model.
"""

import json

import pytest

from tests.browser.conftest import RECORD_WORKER_MESSAGES, PagePython, PyError, open_app
from tests.browser.double import (
    CHAT_MODEL,
    FAIL_DEVICE_MODEL,
    FAIL_NETWORK_MODEL,
    OVERLAY,
    TOOLS_MODEL,
    app_config,
)


@pytest.fixture(scope="session")
def double_site(serve):
    return serve("/", overlay=OVERLAY)


@pytest.fixture
def py(page, double_site):
    """Python in the page with ``client`` ready on the double's chat model."""
    page.add_init_script(RECORD_WORKER_MESSAGES)
    watch = open_app(page, double_site)
    run = PagePython(page)
    run(f"""
import json
from app.client import Client
from app.backends.webllm import WebLLMBackend
CONFIG = json.loads({json.dumps(json.dumps(app_config(double_site.origin)))})
backend = WebLLMBackend(app_config=CONFIG)
progress = []
await backend.load({CHAT_MODEL!r}, on_progress=progress.append)
client = Client(backend)
USER = lambda text: [{{"role": "user", "content": text}}]
""")
    yield run
    watch.assert_clean()


def sent_kinds(page):
    return page.evaluate("window.__toWorker")


def test_load_reports_progress_and_model(py):
    assert py("backend.loaded") == CHAT_MODEL
    assert py("[p['progress'] for p in progress]")[-1] == 1


def test_non_streaming_completion(py):
    reply = py("""
r = await client.chat.completions.create(messages=USER("hello there"), max_tokens=50, seed=7, temperature=0.5)
[r.object, r.model, r.choices[0].message.role, r.choices[0].message.content, r.choices[0].finish_reason,
 r.usage.prompt_tokens > 0, r.usage.completion_tokens, r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens,
 r.backend]
""")
    # 3 visible tokens + the end-of-reply token, which web-llm counts too.
    assert reply == ["chat.completion", CHAT_MODEL, "assistant", "Echo: hello there", "stop", True, 4, True, "webllm"]


def test_stream_with_usage_arrives_token_by_token(py):
    got = py("""
s = await client.chat.completions.create(messages=USER("go [[tokens=6]]"), stream=True,
                                         stream_options={"include_usage": True})
deltas, reasons, usages = [], [], []
async for chunk in s:
    if chunk.choices:
        deltas.append(chunk.choices[0].delta.content)
        reasons.append(chunk.choices[0].finish_reason)
    if chunk.usage:
        usages.append(chunk.usage.completion_tokens)
[deltas, reasons[-1], usages, s.content, s.completion().choices[0].message.content]
""")
    deltas, finish, usages, content, final = got
    assert "".join(d for d in deltas if d) == "t0 t1 t2 t3 t4 t5"
    assert len([d for d in deltas if d]) == 6  # one chunk per token
    assert finish == "stop" and usages == [7]
    assert content == final == "t0 t1 t2 t3 t4 t5"


def test_max_tokens_and_stop_end_the_answer_as_web_llm_does(py):
    assert py("""
r = await client.chat.completions.create(messages=USER("x [[tokens=50]]"), max_tokens=4)
(r.choices[0].message.content, r.choices[0].finish_reason)""") == ["t0 t1 t2 t3 ", "length"]
    assert py("""
r = await client.chat.completions.create(messages=USER("x [[tokens=50]]"), stop=["t3"])
(r.choices[0].message.content, r.choices[0].finish_reason)""") == ["t0 t1 t2 ", "stop"]


def test_stop_mid_stream_then_a_new_request_works(py):
    got = py("""
s = await client.chat.completions.create(messages=USER("long [[tokens=500]] [[delay=5]]"), stream=True)
seen = 0
async for chunk in s:
    if chunk.choices and chunk.choices[0].delta.content:
        seen += 1
        if seen == 3:
            await s.stop()
after = await client.chat.completions.create(messages=USER("again"))
[seen < 500, s.finish_reason, after.choices[0].message.content, after.choices[0].finish_reason]
""")
    assert got == [True, "abort", "Echo: again", "stop"]


def test_stop_before_the_first_chunk_sends_nothing(py, page):
    before = len(sent_kinds(page))
    got = py("""
s = await client.chat.completions.create(messages=USER("long [[tokens=500]]"), stream=True)
await s.stop()
chunks = [c async for c in s]
after = await client.chat.completions.create(messages=USER("fine"))
[len(chunks), s.finish_reason, s.content, after.choices[0].message.content]
""")
    assert got == [1, "abort", "", "Echo: fine"]
    assert sent_kinds(page)[before:].count("chatCompletionStreamInit") == 0


def test_aclose_releases_the_engine(py, page):
    got = py("""
s = await client.chat.completions.create(messages=USER("long [[tokens=500]] [[delay=5]]"), stream=True)
first = await s.__anext__()
await s.aclose()
after = await client.chat.completions.create(messages=USER("next"))
after.choices[0].message.content
""")
    assert got == "Echo: next"
    assert "interruptGenerate" in sent_kinds(page)


def test_two_concurrent_requests_are_served_in_order(py):
    got = py("""
import asyncio
log = []
async def streamed():
    s = await client.chat.completions.create(messages=USER("a [[tokens=20]] [[delay=3]]"), stream=True)
    async for chunk in s:
        if chunk.choices and chunk.choices[0].delta.content:
            log.append("A")
    return s.content
async def plain():
    r = await client.chat.completions.create(messages=USER("b"))
    log.append("B")
    return r.choices[0].message.content
a, b = await asyncio.gather(streamed(), plain())
[a, b, "".join(log)]
""")
    assert got == [" ".join(f"t{i}" for i in range(20)), "Echo: b", "A" * 20 + "B"]


def test_multi_turn_keeps_history_unchanged(py):
    # web-llm reuses its KV cache when the earlier turns match: the second request's prompt tokens
    # are only the new turn's, which the double reports like the real pipeline.
    got = py("""
msgs = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "one two three four five six"}]
r1 = await client.chat.completions.create(messages=msgs)
msgs += [r1.choices[0].message.to_dict(), {"role": "user", "content": "seven"}]
r2 = await client.chat.completions.create(messages=msgs)
[r1.usage.prompt_tokens, r2.usage.prompt_tokens, r2.choices[0].message.content]
""")
    first, second, content = got
    assert content == "Echo: seven"
    assert second < first


def test_json_schema_output_parsed_into_pydantic(py):
    got = py("""
from app import ffi
await ffi.load_packages("pydantic")  # vendored wheel, fetched only now
from pydantic import BaseModel
class Event(BaseModel):
    name: str
    attendees: int
    confirmed: bool
r = await client.chat.completions.parse(messages=USER("make an event"), response_format=Event)
e = r.choices[0].message.parsed
[type(e).__name__, e.name, e.attendees, e.confirmed]
""", timeout_ms=120_000)
    assert got == ["Event", "x", 1, True]


def test_emulated_tool_call_round_trip_through_run_tools(py):
    got = py("""
calls = []
def get_weather(city: str, days: int = 1) -> dict:
    "Weather forecast for a city."
    calls.append((city, days))
    return {"city": city, "forecast": "sunny"}
result = await client.chat.completions.run_tools(messages=USER("weather?"), tools=[get_weather], max_steps=3)
[calls, result.steps, result.messages[-2]["role"], result.completion.choices[0].message.content[:6]]
""")
    calls, steps, tool_role, answer = got
    assert calls == [["x", 1]] and steps == 2 and tool_role == "tool"
    assert answer == "Echo: "  # the model answered in text after reading the tool result


def test_native_tool_calls_for_function_calling_models(py):
    got = py(f"""
await backend.load({TOOLS_MODEL!r})
tools = [{{"type": "function", "function": {{"name": "lookup", "parameters": {{"type": "object", "properties": {{}}}}}}}}]
r = await client.chat.completions.create(messages=USER("find it"), tools=tools)
m = r.choices[0]
[backend.capabilities(None).tools, m.finish_reason, m.message.tool_calls[0].function.name]
""")
    assert got == ["native", "tool_calls", "lookup"]


def test_native_tool_loop_ends_with_an_answer_in_words(py):
    # Step 2 carries the tool-call turn back as text (web-llm refuses content None) and leaves
    # `tools` out after the results, so the model can answer in words.
    got = py(f"""
await backend.load({TOOLS_MODEL!r})
seen = []
def lookup() -> dict:
    "Look it up."
    seen.append(1)
    return {{"found": True}}
result = await client.chat.completions.run_tools(messages=USER("find it"), tools=[lookup], max_steps=3)
[len(seen), result.steps, result.completion.choices[0].finish_reason,
 result.completion.choices[0].message.content.startswith("Echo:")]
""")
    assert got == [1, 2, "stop", True]


@pytest.mark.parametrize("directive, error, base", [
    ("ContextWindowSizeExceededError", "ContextWindowExceeded", "EngineError"),
    ("DeviceLostError", "DeviceLost", "EngineError"),
    ("QuotaExceededError", "QuotaExceeded", "EngineError"),
])
def test_engine_errors_surface_as_python_classes(py, directive, error, base):
    with pytest.raises(PyError) as info:
        py(f'await client.chat.completions.create(messages=USER("boom [[throw={directive}]]"))')
    assert info.value.type == error and base in info.value.mro
    assert info.value.original  # web-llm's own text kept
    if error == "DeviceLost":
        # web-llm unloads everything when the device is lost: the next request says so, and a
        # fresh load works.
        with pytest.raises(PyError) as again:
            py('await client.chat.completions.create(messages=USER("ok"))')
        assert again.value.type == "ModelNotLoaded"
        py(f"await backend.load({CHAT_MODEL!r})")
    # The engine answers afterwards.
    assert py('(await client.chat.completions.create(messages=USER("ok"))).choices[0].message.content') == "Echo: ok"


def test_load_errors_surface_as_python_classes(py):
    with pytest.raises(PyError) as info:
        py(f'await backend.load({FAIL_NETWORK_MODEL!r})')
    assert info.value.type == "ModelFetchFailed"
    with pytest.raises(PyError) as info:
        py(f'await backend.load({FAIL_DEVICE_MODEL!r})')
    assert info.value.type == "DeviceLost"
    with pytest.raises(PyError) as info:
        py('await client.chat.completions.create(messages=USER("hi"))')
    assert info.value.type == "ModelNotLoaded"


def test_request_for_another_model_is_model_not_loaded(py):
    with pytest.raises(PyError) as info:
        py('await client.chat.completions.create(model="Other-Model", messages=USER("hi"))')
    assert info.value.type == "ModelNotLoaded"


@pytest.mark.parametrize("params, param", [
    ({"temperature": 3}, "temperature"),
    ({"top_p": 0}, "top_p"),
    ({"temprature": 0.5}, "temprature"),
    ({"top_logprobs": 2}, "top_logprobs"),
    ({"n": 2, "stream": True}, "n"),
    ({"seed": 1.5}, "seed"),
    ({"logit_bias": {"abc": 1}}, "logit_bias"),
])
def test_bad_parameters_are_rejected_with_nothing_sent(py, page, params, param):
    before = len(sent_kinds(page))
    with pytest.raises(PyError) as info:
        py(f'await client.chat.completions.create(messages=USER("hi"), **{params!r})')
    assert info.value.type == "InvalidRequest" and info.value.param == param
    assert len(sent_kinds(page)) == before


def test_system_messages_are_merged_with_a_warning(py):
    got = py("""
r = await client.chat.completions.create(messages=[{"role": "user", "content": "hi"},
    {"role": "system", "content": "a"}, {"role": "user", "content": "there"}])
[r.choices[0].message.content, len(r.warnings)]
""")
    assert got == ["Echo: there", 1]
