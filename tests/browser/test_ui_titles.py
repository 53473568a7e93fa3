"""Titles written by the on-device model and each conversation's own model, in real Chromium over
web-llm's real worker path (the engine double answers: it echoes the last message, so the title it
writes is the echo of the title instruction, cut to a title's length)."""

from __future__ import annotations

import pytest

from app.titles import INSTRUCTION, MAX_TOKENS, clean_title
from tests.browser.conftest import READY_TIMEOUT_MS, PagePython
from tests.browser.double import CHAT_MODEL, TOOLS_MODEL
from tests.browser.ui_helpers import READ_STORED, answers, open_chat, ui_site

# What the double writes for the title request: "Echo: <instruction>", one word per token, cut at
# the request's max_tokens; the page keeps a clean first line of it.
DOUBLE_TITLE = clean_title(" ".join(f"Echo: {INSTRUCTION}".split()[:MAX_TOKENS]))


@pytest.fixture(scope="module")
def titles_site(serve, tmp_path_factory):
    return ui_site(serve, tmp_path_factory.mktemp("titles"), auto_title=True)


def listed(page):
    return page.locator("#conversation-list .open").all_inner_texts()


def send(page, text, count):
    page.fill("#prompt", text)
    page.press("#prompt", "Enter")
    page.wait_for_function(f"() => document.querySelectorAll('#messages .msg-assistant[data-status=done]').length"
                           f" === {count}", timeout=READY_TIMEOUT_MS)


def test_the_model_names_a_conversation_and_each_conversation_brings_back_its_model(page, titles_site):
    open_chat(page, titles_site)
    py = PagePython(page)
    # Both models on this device (downloaded from the test server, as the Models panel does).
    py(f"""
from app import session
manager = await session.current.models()
for model_id in ({CHAT_MODEL!r}, {TOOLS_MODEL!r}):
    await manager.download(model_id)
""")
    send(page, "what colour are zebras", 1)
    # The first words first, then the title the model wrote; only the exchange is shown and kept.
    page.wait_for_function("t => [...document.querySelectorAll('#conversation-list .open')]"
                           ".some(b => b.textContent === t)", arg=DOUBLE_TITLE, timeout=READY_TIMEOUT_MS)
    assert DOUBLE_TITLE != "what colour are zebras" and DOUBLE_TITLE.endswith("…") and len(DOUBLE_TITLE) <= 61
    page.wait_for_function(f"async t => (await ({READ_STORED})()).some(c => c.title === t)", arg=DOUBLE_TITLE)
    first = next(c for c in page.evaluate(READ_STORED) if c["title"] == DOUBLE_TITLE)
    assert [m["content"] for m in first["messages"]] == ["what colour are zebras", "Echo: what colour are zebras"]
    assert first["model"] == CHAT_MODEL

    # Another model for a new conversation, chosen as the Models panel's "Use for chat" does.
    py(f"from app import session\nawait session.current.use_model({TOOLS_MODEL!r})")
    page.click("#new-chat")
    page.wait_for_function("m => document.querySelector('#backend-notice').textContent.includes(m)",
                           arg=TOOLS_MODEL, timeout=READY_TIMEOUT_MS)
    send(page, "hello other model", 1)
    assert answers(page).last.locator(".meta").inner_text().count(TOOLS_MODEL) == 1

    # Opening the first conversation brings its model back; its next answer comes from it.
    page.locator("#conversation-list .open:not([aria-current=true])").click()  # the other one: the first
    page.wait_for_function("() => document.querySelectorAll('#messages .msg').length === 2")
    page.wait_for_function("m => document.querySelector('#backend-notice').textContent.includes(m)",
                           arg=CHAT_MODEL, timeout=READY_TIMEOUT_MS)
    send(page, "and horses", 2)
    assert CHAT_MODEL in answers(page).last.locator(".meta").inner_text()
    # Each conversation was named by the model that answered it (the double writes the same words).
    assert listed(page) == [DOUBLE_TITLE, DOUBLE_TITLE]
    assert {c["model"] for c in page.evaluate(READ_STORED)} == {CHAT_MODEL, TOOLS_MODEL}
