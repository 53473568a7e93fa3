"""Two tabs of the app on one conversation (real Chromium, one browser profile, the engine double as
the model): each tab keeps the other's messages, sees them as they are written, and a conversation
deleted in one tab is gone from the other and never comes back."""

from __future__ import annotations

import pytest

from tests.browser.conftest import READY_TIMEOUT_MS
from tests.browser.ui_helpers import READ_STORED, confirm, open_chat, ui_site


@pytest.fixture(scope="module")
def tabs_site(serve, tmp_path_factory):
    return ui_site(serve, tmp_path_factory.mktemp("tabs"))


def send(page, text):
    page.fill("#prompt", text)
    page.press("#prompt", "Enter")


def bodies(page):
    return [t.strip() for t in page.locator("#messages .msg .body").all_inner_texts()]


def shows(page, expected):
    """Wait until the tab shows ``expected`` message bodies (answers render as markdown a moment later)."""
    page.wait_for_function("want => JSON.stringify([...document.querySelectorAll('#messages .msg .body')]"
                           ".map(e => e.innerText.trim())) === JSON.stringify(want)", arg=expected,
                           timeout=READY_TIMEOUT_MS)


def stored_texts(page, title_start):
    convs = [c for c in page.evaluate(READ_STORED) if c["title"].startswith(title_start)]
    assert len(convs) == 1, convs
    return [m["content"].strip() for m in convs[0]["messages"]]


def test_two_tabs_chatting_in_one_conversation_keep_and_show_every_message(page, tabs_site):
    a = page
    wa = open_chat(a, tabs_site)
    send(a, "alpha [[tokens=3]]")
    a.locator("#messages .msg-assistant[data-status=done]").wait_for(timeout=READY_TIMEOUT_MS)
    b = a.context.new_page()
    wb = open_chat(b, tabs_site)
    # B opens the same conversation; B's answer appears in A as it streams, then finished.
    shows(b, bodies(a))
    send(b, "beta [[tokens=40]] [[delay=40]]")
    a.wait_for_function("() => document.querySelector('#messages .msg-assistant[data-status=streaming]')",
                        timeout=READY_TIMEOUT_MS)
    assert a.locator("#messages .msg-user").nth(1).inner_text().find("beta") >= 0
    b.locator("#messages .msg-assistant[data-status=done] >> nth=1").wait_for(timeout=READY_TIMEOUT_MS)
    shows(a, bodies(b))
    assert len(bodies(a)) == 4

    # Both send at once into that conversation: neither write overwrites the other's messages.
    send(a, "from a [[tokens=30]] [[delay=10]]")
    send(b, "from b [[tokens=30]] [[delay=10]]")
    for tab in (a, b):
        tab.wait_for_function("() => document.querySelectorAll("
                              "'#messages .msg-assistant[data-status=done]').length >= 4 && "
                              "!document.querySelector('#messages .msg-assistant[data-status=streaming]')",
                              timeout=READY_TIMEOUT_MS)
    kept = stored_texts(a, "alpha")
    assert len(kept) == 8
    assert sum(t.startswith("from a") for t in kept) == 1 and sum(t.startswith("from b") for t in kept) == 1
    # A third tab, opened now, reads all eight from storage, in the order the two tabs show.
    c = a.context.new_page()
    wc = open_chat(c, tabs_site)
    shows(a, bodies(b))
    shows(c, bodies(a))
    assert len(bodies(c)) == 8
    for w in (wa, wb, wc):
        w.assert_clean()


def test_a_conversation_deleted_in_one_tab_leaves_the_other_and_storage_for_good(page, tabs_site):
    a = page
    wa = open_chat(a, tabs_site)
    a.locator("#new-chat").click()
    send(a, "doomed [[tokens=3]]")
    a.locator("#messages .msg-assistant[data-status=done]").wait_for(timeout=READY_TIMEOUT_MS)
    b = a.context.new_page()
    wb = open_chat(b, tabs_site)
    b.locator("#conversation-list .open", has_text="doomed").wait_for()
    # B starts a long answer in it; A deletes it meanwhile.
    b.locator("#conversation-list .open", has_text="doomed").click()
    send(b, "still here? [[tokens=400]] [[delay=20]]")
    b.locator("#messages .msg-assistant[data-status=streaming]").wait_for(timeout=READY_TIMEOUT_MS)
    a.locator("#conversation-list .conv", has_text="doomed").get_by_role(
        "button", name="Delete this conversation").click()
    confirm(a)
    # B: gone from the list and the screen, its answer stopped, the composer free again.
    b.wait_for_function("() => ![...document.querySelectorAll('#conversation-list .open')]"
                        ".some(e => e.textContent.startsWith('doomed'))", timeout=READY_TIMEOUT_MS)
    b.wait_for_function("() => !document.querySelector('#messages .msg') && "
                        "document.querySelector('#chat').getAttribute('aria-busy') !== 'true'",
                        timeout=READY_TIMEOUT_MS)
    assert not [c for c in b.evaluate(READ_STORED) if c["title"].startswith("doomed")]
    # Reloaded, neither tab brings it back.
    for tab in (b, a):
        tab.reload()
        tab.wait_for_selector("#chat[data-state=ready]", timeout=READY_TIMEOUT_MS)
        assert not [t for t in tab.locator("#conversation-list .open").all_inner_texts() if t.startswith("doomed")]
    for w in (wa, wb):
        w.assert_clean()
