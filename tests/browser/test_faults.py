"""Faults in real Chromium: what the user sees, that nothing is lost and nothing hangs.

(The endpoint faults, a hung endpoint and Stop before the first token, are in test_session.py.)
"""

from __future__ import annotations

from tests.browser.double import TINY_CONTEXT_MODEL
from tests.browser.ui_helpers import answers, open_chat, ui_site


def test_a_chat_longer_than_the_models_context_window_keeps_answering(page, serve, tmp_path_factory):
    """web-llm's model has a 32-token window here: without trimming, the third message fails for good."""
    site = ui_site(serve, tmp_path_factory.mktemp("window"), model=TINY_CONTEXT_MODEL)
    w = open_chat(page, site)
    for i, text in enumerate(["first question here", "second question here", "third question here",
                              "fourth question here"]):
        page.fill("#prompt", text)
        page.press("#prompt", "Enter")
        page.locator(f"#messages .msg-assistant:nth-child({2 * i + 2})[data-status=done]").wait_for(timeout=60_000)
    assert answers(page).count() == 4
    assert answers(page).nth(3).locator(".body").inner_text() == "Echo: fourth question here"
    assert "left out to fit the model's context window" in answers(page).nth(3).locator(".meta").inner_text()
    assert "left out" not in answers(page).nth(0).locator(".meta").inner_text()
    assert page.inner_text("#chat-notice").strip() == ""
    w.assert_clean()
