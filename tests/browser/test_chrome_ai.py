"""Chrome's built-in model through the real app code (ffi, backend, client, router) in Chromium.

This Chromium has the Prompt API (on 127.0.0.1, a secure context) but no model to run: its real
``availability()`` says "unavailable". The first test runs against that; the others inject the double
of the documented ``LanguageModel`` interface (tests/browser/double/chrome_ai.js) before the page starts.
"""

from __future__ import annotations

import pytest

from tests.browser.conftest import API_KEY, PagePython, PyError, open_app
from tests.browser.double import CHROME_AI

SETUP = """
import json
from app import ffi
from app.client import Client
from app.router import Route, Router
from app.backends.chrome_ai import ChromeAIBackend
from app.backends.openai_compat import OpenAICompatBackend

progress = []
chrome = ChromeAIBackend(on_progress=lambda report: progress.append(report["progress"]))
# The server is on loopback here; it stands for a cloud endpoint, so it is not "on this device".
cloud = OpenAICompatBackend(preset="llamacpp", base_url=%r, api_key=%r, model="smollm2", on_device=False)
router = Router([Route(cloud, priority=0), Route(chrome, priority=1)], online=ffi.is_online)
client = Client(router)
USER = lambda text: [{"role": "user", "content": text}]
"""


def start(page, site, llama, *, double: bool, availability: str = "available") -> PagePython:
    if double:
        page.add_init_script(path=str(CHROME_AI))
        page.add_init_script(f"window.chromeAIDouble.availability = {availability!r}")
    open_app(page, site, allowed=(llama.origin,))
    py = PagePython(page)
    py(SETUP % (llama.origin + "/v1", API_KEY))
    return py


def double(page, expression: str):
    return page.evaluate(f"() => window.chromeAIDouble.{expression}")


def test_this_chromium_cannot_run_it_so_the_router_skips_it(page, site, llama):
    py = start(page, site, llama, double=False)
    assert py("await chrome.availability()") == "unavailable"
    got = py("""
r = await client.chat.completions.create(messages=USER("hi"), max_tokens=4)
[r.backend, r.route]
""")
    assert got == ["llamacpp", "policy priority"]
    before = llama.requests_seen()
    with pytest.raises(PyError) as info:
        py('await client.chat.completions.create(messages=USER("my secret"), private=True)')
    assert info.value.type == "NoBackendAvailable"
    assert "chrome-ai: the built-in model is unavailable here" in info.value.message
    assert llama.requests_seen() == before
    with pytest.raises(PyError) as info:  # used directly: a typed error before anything runs
        py('await Client(chrome).chat.completions.create(messages=USER("hi"))')
    assert info.value.type == "BuiltInModelUnavailable" and "FeatureUnsupported" in info.value.mro


def test_private_request_streams_from_the_built_in_model_after_its_download(page, site, llama):
    py = start(page, site, llama, double=True, availability="downloadable")
    assert py("await chrome.availability()") == "downloadable"
    before = llama.requests_seen()
    got = py("""
msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "my secret plan"}]
s = await client.chat.completions.create(messages=msgs, private=True, stream=True,
                                         stream_options={"include_usage": True})
chunks = [c async for c in s]
pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
u = chunks[-1].usage
[s.backend, s.route, pieces, s.content, s.finish_reason, progress,
 [u.prompt_tokens, u.completion_tokens, u.extra["estimated"]], chrome.state, chrome.context_window]
""")
    backend, route, pieces, content, finish, reported, usage, state, window = got
    assert (backend, route) == ("chrome-ai", "policy priority, private")
    assert pieces == ["Echo:", " my", " secret", " plan"] and content == "Echo: my secret plan"
    assert finish == "stop"
    assert reported == [0.0, 0.25, 0.5, 0.75, 1.0]  # the double's four download steps
    # The double counts words + 1 per message: system 2+1, prompt 3+1; answer 4+1.
    assert usage == [7, 5, False]
    assert (state, window) == ("available", 4096)
    assert llama.requests_seen() == before  # nothing left the device
    assert double(page, "prompts")[0]["input"] == [{"role": "user", "content": "my secret plan"}]
    assert double(page, "live") == 0  # the session was destroyed after the answer
    # Now available: a second request needs no download.
    assert py('(await client.chat.completions.create(messages=USER("again"), private=True)).choices[0]'
              '.message.content') == "Echo: again"
    assert py("progress[5:]") == [0.0, 1.0]  # create() always reports 0 and 1


def test_json_output_stop_sequences_and_max_tokens(page, site, llama):
    py = start(page, site, llama, double=True)
    got = py("""
local = Client(chrome)
r = await local.chat.completions.parse(messages=USER("A city and its population."),
    response_format={"type": "object", "properties": {"city": {"type": "string"}, "population": {"type": "integer"}},
                     "required": ["city", "population"]})
stopped = await local.chat.completions.create(messages=USER("[[count=20]]"), stop=[" 5"])
s = await local.chat.completions.create(messages=USER("[[count=20]]"), stream=True, stop=["7 8"])
streamed = [c.choices[0].delta.content async for c in s if c.choices and c.choices[0].delta.content]
cut = await local.chat.completions.create(messages=USER("[[count=20]]"), stream=True, max_tokens=3)
async for _ in cut:
    pass
[r.choices[0].message.parsed, stopped.choices[0].message.content, stopped.choices[0].finish_reason,
 "".join(streamed), s.finish_reason, cut.content, cut.finish_reason]
""")
    parsed, text, finish, streamed, stream_finish, cut, cut_finish = got
    assert parsed == {"city": "text", "population": 1}
    assert double(page, "prompts")[0]["responseConstraint"]["required"] == ["city", "population"]
    assert (text, finish) == ("1 2 3 4", "stop")
    assert (streamed, stream_finish) == ("1 2 3 4 5 6 ", "stop")
    assert (cut, cut_finish) == ("1 2 3 4 5 6 ", "length")  # 3 tokens ~ 12 characters
    assert double(page, "live") == 0


def test_abort_and_a_prompt_too_long_for_its_window(page, site, llama):
    py = start(page, site, llama, double=True)
    page.evaluate("() => { window.chromeAIDouble.delayMs = 5; }")
    got = py("""
local = Client(chrome)
s = await local.chat.completions.create(messages=USER("[[count=400]]"), stream=True)
n = 0
async for chunk in s:
    n += 1
    if n == 3:
        await s.stop()
[n < 10, s.finish_reason]
""")
    assert got == [True, "abort"]
    assert double(page, "live") == 0
    page.evaluate("() => { window.chromeAIDouble.delayMs = 0; window.chromeAIDouble.contextWindow = 40; }")
    long = "word " * 60
    with pytest.raises(PyError) as info:  # measured before the model runs
        py(f'await Client(chrome).chat.completions.create(messages=USER({long!r}))')
    assert info.value.type == "ContextWindowExceeded"
    page.evaluate("() => { delete LanguageModel.prototype.measureContextUsage; }")  # as where it is missing
    with pytest.raises(PyError) as info:  # then the API's own QuotaExceededError says it
        py(f'await Client(chrome).chat.completions.create(messages=USER({long!r}))')
    assert info.value.type == "ContextWindowExceeded" and "QuotaExceededError" in info.value.original
    # Through the router, the prompt goes to a backend whose window fits instead.
    got = py(f'r = await client.chat.completions.create(messages=USER({long!r}), max_tokens=4)\n'
             '[r.backend, chrome.context_window]')
    assert got == ["llamacpp", 40]


def test_unsupported_languages_are_unavailable_and_nothing_is_created(page, site, llama):
    py = start(page, site, llama, double=True)
    got = py("""
french = ChromeAIBackend(languages=("fr",))
state = await french.availability()
only_french = Client(Router([Route(cloud), Route(french, priority=1)]))
r = await only_french.chat.completions.create(messages=USER("bonjour"), max_tokens=4)
[state, french.unavailable, r.backend]
""")
    assert got == ["unavailable", "the built-in model is unavailable here for languages fr", "llamacpp"]
    assert double(page, "created") == 0
