"""A thinking model in the chat, in real Chromium over web-llm's real worker path (the engine double
writes a Qwen3-style <think> block): the reasoning streams into its own collapsible block, folds away
when the answer starts, says how long it thought, is never sent back, and the Think switch turns it off."""

from __future__ import annotations

import pytest

from tests.browser.conftest import READY_TIMEOUT_MS, PagePython
from tests.browser.ui_helpers import READ_STORED, open_chat, ui_site

QWEN3 = "Qwen3-Double-q4f32_1-MLC"

# Records the messages of every request the page sends to web-llm (the bridge's stream call).
RECORD_REQUESTS = """
from app.ffi import engine
sent = []
_Real = engine.ChunkIterator
class _Recording(_Real):
    def __init__(self, handle, request):
        sent.append(request)
        super().__init__(handle, request)
engine.ChunkIterator = _Recording
len(sent)
"""


@pytest.fixture(scope="module")
def think_site(serve, tmp_path_factory):
    return ui_site(serve, tmp_path_factory.mktemp("reasoning"), model=QWEN3)


def test_reasoning_streams_apart_folds_away_and_is_never_sent_back(page, think_site):
    w = open_chat(page, think_site)
    py = PagePython(page)
    py(RECORD_REQUESTS)
    assert page.is_visible("#think-toggle") and page.is_checked("#think")
    page.fill("#prompt", "why is the sky blue [[think=40]] [[delay=25]]")
    page.press("#prompt", "Enter")
    block = page.locator("#messages .msg-assistant .reasoning")
    # While it thinks: the block is open, says "Thinking…" and grows; the answer is still empty.
    page.wait_for_function("() => { const d = document.querySelector('#messages .msg-assistant .reasoning');"
                           " return d && d.open && /r5 /.test(d.querySelector('.reasoning-text').textContent); }",
                           timeout=READY_TIMEOUT_MS)
    assert block.locator("summary").inner_text() == "Thinking…"
    assert page.locator("#messages .msg-assistant .body").inner_text().strip() == ""
    page.locator("#messages .msg-assistant[data-status=done]").wait_for(timeout=READY_TIMEOUT_MS)
    assert not block.evaluate("d => d.open")  # folded away when the answer started
    assert block.locator("summary").inner_text().startswith("Thought for ")
    assert block.locator(".reasoning-text").text_content() == " ".join(f"r{i}" for i in range(40))
    answer = page.locator("#messages .msg-assistant .body").inner_text().strip()
    assert answer == "Echo: why is the sky blue" and "think" not in answer and "r0" not in answer

    # The next turn's history carries the answer, not the thinking.
    page.fill("#prompt", "and at sunset? [[tokens=3]]")
    page.press("#prompt", "Enter")
    page.wait_for_function("() => document.querySelectorAll('#messages .msg-assistant[data-status=done]').length === 2",
                           timeout=READY_TIMEOUT_MS)
    history = py("sent[-1]['messages']")
    assert [m["role"] for m in history] == ["user", "assistant", "user"]
    assert history[1]["content"] == "Echo: why is the sky blue"
    assert not any("r0 r1" in str(m["content"]) or "<think>" in str(m["content"]) for m in history)
    # The reasoning is kept with the conversation (and comes back after a reload), apart from the answer.
    stored = [c for c in page.evaluate(READ_STORED) if c["title"].startswith("why is the sky")][0]
    assert stored["messages"][1]["reasoning"].startswith("r0 r1") and stored["messages"][1]["content"].startswith("Echo")
    page.reload()
    page.wait_for_selector("#chat[data-state=ready]", timeout=READY_TIMEOUT_MS)
    page.wait_for_function("() => document.querySelector('#messages .msg-assistant .reasoning summary')"
                           "?.textContent.startsWith('Thought for')")
    w.assert_clean()


def test_the_think_switch_turns_thinking_off_for_this_conversation(page, think_site):
    w = open_chat(page, think_site)
    py = PagePython(page)
    py(RECORD_REQUESTS)
    page.locator("#new-chat").click()
    page.uncheck("#think")
    page.fill("#prompt", "quick one [[think=40]]")
    page.press("#prompt", "Enter")
    page.locator("#messages .msg-assistant[data-status=done]").wait_for(timeout=READY_TIMEOUT_MS)
    assert py("sent[-1]['extra_body']") == {"enable_thinking": False}
    assert page.locator("#messages .msg-assistant .reasoning").is_hidden()
    assert page.locator("#messages .msg-assistant .body").inner_text().strip() == "Echo: quick one"
    # Kept with the conversation: after a reload the switch is still off here.
    page.reload()
    page.wait_for_selector("#chat[data-state=ready]", timeout=READY_TIMEOUT_MS)
    page.wait_for_function("() => !document.getElementById('think-toggle').hidden")
    assert not page.is_checked("#think")
    w.assert_clean()
