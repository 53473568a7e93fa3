"""The chat as users drive it: keyboard, streaming, stop, retry, edit, reload, conversations, themes.

The page's chat talks to web-llm's real worker path with the engine double as the model
(tests/browser/double); only static/chat-config.json differs from the shipped site.
"""

from __future__ import annotations

import pytest

from tests.browser.conftest import QUIET_FLAGS, READY_TIMEOUT_MS, PagePython
from tests.browser.double import CHAT_MODEL
from tests.browser.ui_helpers import READ_STORED, answers, confirm, open_chat, open_sheet, shot, ui_site


@pytest.fixture(scope="session")
def chat_site(serve, tmp_path_factory):
    return ui_site(serve, tmp_path_factory.mktemp("ui"))


# Records every state of the first streaming answer's text and marks the nodes, so a test can tell
# a token appended to one node from a re-render.
OBSERVE = """
() => {
  window.__states = [];
  const log = document.getElementById('messages');
  new MutationObserver(() => {
    const msg = log.querySelector('.msg-assistant');
    if (!msg) return;
    if (!msg.__mark) msg.__mark = 'first';
    const text = msg.querySelector('.body').textContent;
    if (window.__states[window.__states.length - 1] !== text) window.__states.push(text);
  }).observe(log, {subtree: true, childList: true, characterData: true});
}
"""


def test_keyboard_send_streams_token_by_token_into_one_node(page, chat_site):
    w = open_chat(page, chat_site)
    assert "Double-Chat" in page.inner_text("#backend-notice")
    shot(page, "empty")
    page.evaluate(OBSERVE)
    prompt = page.locator("#prompt")
    prompt.fill("first line")
    prompt.press("Shift+Enter")  # a new line, nothing sent
    prompt.type("go [[tokens=24]] [[delay=15]]")
    assert page.locator("#messages .msg").count() == 0
    assert prompt.input_value() == "first line\ngo [[tokens=24]] [[delay=15]]"
    prompt.press("Enter")
    assert prompt.input_value() == ""
    user = page.locator("#messages .msg-user")
    user.wait_for()
    assert user.locator(".body").inner_text() == "first line\ngo [[tokens=24]] [[delay=15]]"
    page.evaluate("document.querySelector('#messages .msg-user').__mark = 'user'")
    done = page.locator("#messages .msg-assistant[data-status=done]")
    done.wait_for(timeout=60_000)
    states = page.evaluate("window.__states")
    # The answer grew token by token: many growing states, each extending the last.
    growing = [s for s in states if s.startswith("t0")]
    assert len(growing) >= 12, states
    assert all(b.startswith(a) for a, b in zip(growing, growing[1:]) if b.startswith("t"))
    # Same nodes from first token to last: nothing was re-rendered.
    assert page.evaluate("document.querySelector('#messages .msg-assistant').__mark") == "first"
    assert page.evaluate("document.querySelector('#messages .msg-user').__mark") == "user"
    assert done.locator(".body").inner_text().strip() == " ".join(f"t{i}" for i in range(24))
    meta = done.locator(".meta").inner_text()
    assert "tok/s" in meta and "webllm" in meta and CHAT_MODEL in meta and "25 tokens" in meta
    # The conversation is listed under its first line and marked current.
    current = page.locator("#conversation-list .open[aria-current=true]")
    assert current.inner_text() == "first line go [[tokens=24]] [[delay=15]]"
    shot(page, "chatting")
    w.assert_clean()


def test_escape_stops_then_retry_and_edit_resend(page, chat_site):
    w = open_chat(page, chat_site)
    page.locator("#new-chat").click()
    prompt = page.locator("#prompt")
    prompt.fill("long [[tokens=400]] [[delay=20]]")
    prompt.press("Enter")
    page.locator("#stop").wait_for(state="visible")
    streaming = page.locator("#messages .msg-assistant[data-status=streaming] .body")
    page.wait_for_function("() => (document.querySelector('#messages .msg-assistant .body')?.textContent || '')"
                           ".split(' ').length > 5")
    page.keyboard.press("Escape")
    stopped = page.locator("#messages .msg-assistant[data-status=stopped]")
    stopped.wait_for()
    assert streaming.count() == 0
    text = stopped.locator(".body").inner_text()
    assert text.startswith("t0 t1 t2") and "t399" not in text
    assert "stopped" in stopped.locator(".meta").inner_text()
    assert page.locator("#stop").is_hidden() and page.locator("#send").is_visible()

    # Retry: the stopped answer is replaced by a new, complete one.
    stopped.get_by_role("button", name="Answer this again").click()
    page.locator("#messages .msg-assistant[data-status=streaming]").wait_for()
    page.keyboard.press("Escape")
    page.locator("#messages .msg-assistant[data-status=stopped]").wait_for()
    assert answers(page).count() == 1

    # Edit and resend: the user message changes, the old answer goes, a new one streams.
    page.locator("#messages .msg-user").get_by_role("button", name="Edit and send again").click()
    box = page.get_by_role("textbox", name="Edit your message")
    box.fill("edited words here")
    box.press("Enter")
    page.locator("#messages .msg-assistant[data-status=done]").wait_for()
    assert page.locator("#messages .msg-user .body").inner_text() == "edited words here"
    assert answers(page).count() == 1
    assert answers(page).locator(".body").inner_text().strip() == "Echo: edited words here"
    w.assert_clean()


def test_reload_mid_stream_keeps_what_arrived_and_conversations_are_managed(page, chat_site):
    w = open_chat(page, chat_site)
    prompt = page.locator("#prompt")
    page.locator("#new-chat").click()
    prompt.fill("keep me [[tokens=2000]] [[delay=20]]")
    prompt.press("Enter")
    # Wait until a partial answer of some length has been written to IndexedDB, then reload.
    page.wait_for_function(f"""async () => {{
        const all = await ({READ_STORED})();
        const c = all.find(c => c.title.startsWith('keep me'));
        return c && c.messages.length === 2 && c.messages[1].content.split(' ').length > 10;
    }}""", timeout=60_000)
    stored = [c for c in page.evaluate(READ_STORED) if c["title"].startswith("keep me")][0]
    partial = stored["messages"][1]["content"]
    page.reload()
    page.wait_for_selector("#chat[data-state=ready]", timeout=READY_TIMEOUT_MS)
    answer = page.locator("#messages .msg-assistant[data-status=interrupted]")
    answer.wait_for()
    shown = answer.locator(".body").inner_text().strip()
    assert shown.startswith(partial.strip()) and len(shown) >= len(partial.strip())
    assert "interrupted" in answer.locator(".meta").inner_text()
    items = page.locator("#conversation-list .conv")
    titles = items.locator(".open").all_inner_texts()
    assert titles[0] == "keep me [[tokens=2000]] [[delay=20]]"

    # Rename by keyboard; the name stays across a reload.
    first = items.first
    first.get_by_role("button", name="Rename this conversation").click()
    box = page.get_by_role("textbox", name="New name for the conversation")
    box.fill("Renamed chat")
    box.press("Enter")
    page.locator("#conversation-list .open", has_text="Renamed chat").wait_for()
    page.wait_for_function(f"""async () => (await ({READ_STORED})()).some(c => c.title === 'Renamed chat')""")
    count = items.count()
    page.reload()
    page.wait_for_selector("#chat[data-state=ready]", timeout=READY_TIMEOUT_MS)
    page.locator("#conversation-list .open", has_text="Renamed chat").wait_for()

    # Delete asks in the page: Cancel (or Escape) keeps the conversation ...
    delete = page.locator("#conversation-list .conv", has_text="Renamed chat").get_by_role(
        "button", name="Delete this conversation")
    delete.click()
    assert confirm(page, "no") == "Delete the conversation “Renamed chat”?"
    delete.click()
    page.wait_for_selector("#confirm-dialog[open]")
    assert page.evaluate("() => document.activeElement.id") == "confirm-no"  # the safe choice has the focus
    page.keyboard.press("Escape")
    page.wait_for_selector("#confirm-dialog", state="hidden")
    assert page.locator("#conversation-list .conv", has_text="Renamed chat").count() == 1
    # ... and Delete removes it: gone from the list and from storage.
    page.locator("#conversation-list .conv", has_text="Renamed chat").get_by_role(
        "button", name="Delete this conversation").click()
    confirm(page)
    page.wait_for_function(f"() => document.querySelectorAll('#conversation-list .conv').length === {count - 1}")
    page.wait_for_function(f"""async () => !(await ({READ_STORED})()).some(c => c.title === 'Renamed chat')""")
    w.assert_clean()


def test_settings_reject_bad_input_and_theme_toggles(page, chat_site):
    w = open_chat(page, chat_site)
    open_sheet(page, "settings")
    page.fill("#setting-temperature", "5")
    page.get_by_role("button", name="Save", exact=True).click()
    error = page.locator("#settings-error")
    error.wait_for(state="visible")
    assert "temperature" in error.inner_text()
    page.fill("#setting-temperature", "0.5")
    page.fill("#setting-system-prompt", "Answer briefly.")
    page.get_by_role("button", name="Save", exact=True).click()
    page.locator("#settings-saved", has_text="Saved.").wait_for()
    assert error.is_hidden()
    theme = page.locator("#theme")
    theme.click()
    assert page.get_attribute("html", "data-theme") == "light"
    theme.click()
    assert page.get_attribute("html", "data-theme") == "dark"
    PagePython(page)("""
import asyncio
from app import ffi
while await ffi.kv_get("settings", "theme") != "dark":
    await asyncio.sleep(0.02)   # poll until the toggle's write has landed, then reload
""")
    page.reload()
    page.wait_for_selector("#chat[data-state=ready]", timeout=READY_TIMEOUT_MS)
    page.wait_for_selector("html[data-theme=dark]")
    assert page.input_value("#setting-system-prompt") == "Answer briefly."
    assert page.input_value("#setting-temperature") == "0.5"
    w.assert_clean()


def test_narrow_screen_dark_theme_chat(page, chat_site):
    page.set_viewport_size({"width": 360, "height": 740})
    page.emulate_media(color_scheme="dark")
    w = open_chat(page, chat_site)
    assert page.locator("#hl-dark").count() == 0  # highlight.js's styles load with the renderer, not at start-up
    open_sheet(page, "conversations")  # on a phone the conversation list is a sheet
    page.locator("#new-chat").click()
    page.wait_for_selector("#sidebar", state="hidden")
    page.fill("#prompt", "Show **markdown** and `code`:\n\n```python\nprint('hi')\n```")
    page.locator("#send").click()
    done = page.locator("#messages .msg-assistant[data-rendered=markdown]")
    done.wait_for()
    assert done.locator("strong").inner_text() == "markdown"
    assert done.locator("pre code.hljs").count() == 1
    # The dark highlight.js stylesheet applies: the code block is coloured for a dark page.
    page.wait_for_function("() => getComputedStyle(document.querySelector('#messages pre code.hljs')).color !== ''"
                           " && document.getElementById('hl-dark').sheet !== null")
    assert page.evaluate("matchMedia(document.getElementById('hl-dark').media).matches") is True
    # Nothing wider than the screen: no sideways scrolling at 360 px.
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    assert page.locator("#send").is_visible() and page.locator("#prompt").is_visible()
    shot(page, "chatting-360-dark")
    w.assert_clean()


def test_without_webgpu_the_page_says_so_and_chats_through_the_cloud(launch_chromium, serve, tmp_path_factory,
                                                                      llama):
    from tests.browser.conftest import API_KEY

    site = ui_site(serve, tmp_path_factory.mktemp("nogpu"),
                   cloud={"base_url": llama.origin + "/v1", "model": "smollm2", "label": "llama.cpp test server"})
    browser = launch_chromium(QUIET_FLAGS)  # no --enable-unsafe-webgpu
    page = browser.new_page()
    w = open_chat(page, site, allowed=(llama.origin,))
    notice = page.locator("#backend-notice[data-kind=cloud]")
    notice.wait_for()
    assert "Models cannot run in this browser" in notice.inner_text()
    assert "llama.cpp test server" in notice.inner_text()
    shot(page, "no-webgpu")
    # The key is entered in Settings (kept in memory); then the chat answers from the server.
    open_sheet(page, "settings")
    page.fill("#setting-api-key", API_KEY)
    page.get_by_role("button", name="Save", exact=True).click()
    page.locator("#settings-saved", has_text="Saved.").wait_for()
    page.fill("#setting-max-tokens", "12")
    page.get_by_role("button", name="Save", exact=True).click()
    page.fill("#prompt", "Say hello.")
    page.press("#prompt", "Enter")
    done = page.locator("#messages .msg-assistant[data-status=done]")
    done.wait_for(timeout=120_000)
    assert done.locator(".body").inner_text().strip(), done.locator(".meta").inner_text()
    assert "llama.cpp test server" in done.locator(".meta").inner_text()
    w.assert_clean()


def test_without_webgpu_or_endpoint_the_page_points_to_settings(launch_chromium, serve, tmp_path_factory):
    site = ui_site(serve, tmp_path_factory.mktemp("nothing"))
    page = launch_chromium(QUIET_FLAGS).new_page()
    w = open_chat(page, site)
    notice = page.locator("#backend-notice[data-kind=none]")
    notice.wait_for()
    page.fill("#prompt", "anyone there?")
    page.press("#prompt", "Enter")
    failed = page.locator("#messages .msg-assistant[data-status=error]")
    failed.wait_for()
    assert "NoBackendAvailable" in page.inner_text("#chat-notice")
    notice.get_by_role("button", name="Open the settings to add an endpoint").click()
    assert page.evaluate("document.activeElement.id") == "setting-base-url"
    shot(page, "no-webgpu-no-endpoint")
    w.assert_clean()
