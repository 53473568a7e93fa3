"""Storage refused for want of quota, in real Chromium with real storage: the chat keeps talking and
says what was not saved (and saves once space is back); a download whose staged part is refused
fails at once with a typed error in the Models panel, and Cancel and Delete still work.

The quota is enforced through the DevTools protocol (Storage.overrideQuotaForOrigin), as in
tests/browser/test_models.py: Chromium refuses writes past it with a real QuotaExceededError
(navigator.storage.estimate() does not report it).
"""

from __future__ import annotations

import json

import pytest

from tests.browser.double import CHAT_MODEL, OVERLAY, app_config
from tests.browser.model_server import ModelServer, SyntheticModel
from tests.browser.ui_helpers import answers, open_chat, shot, ui_site

# A quota far below what the page already uses: every write that needs more space is refused.
TINY_QUOTA = 1


def limit_quota(page, origin, quota):
    """Enforce ``quota`` bytes on ``origin`` from now on; returns the CDP session that lifts it.

    Set before the page first opens IndexedDB: Chromium's IndexedDB grants space from an allowance
    it asked the quota manager for (BucketContext::kBucketSpaceCacheTimeLimit, 30 s), so an
    override set while the page holds its database open is only felt up to 30 s later.
    """
    cdp = page.context.new_cdp_session(page)
    cdp.send("Storage.overrideQuotaForOrigin", {"origin": origin, "quotaSize": quota})
    assert cdp.send("Storage.getUsageAndQuota", {"origin": origin})["overrideActive"]
    return cdp


def lift_quota(cdp, origin):
    cdp.send("Storage.overrideQuotaForOrigin", {"origin": origin})  # no size: the override ends
    assert not cdp.send("Storage.getUsageAndQuota", {"origin": origin})["overrideActive"]


def send(page, text):
    n = answers(page).count()
    page.fill("#prompt", text)
    page.press("#prompt", "Enter")
    answers(page).nth(n).and_(page.locator("[data-status=done]")).wait_for(timeout=30_000)


def notice(page) -> str:
    return page.inner_text("#chat-notice") if page.is_visible("#chat-notice") else ""


@pytest.fixture(scope="module")
def chat_site(serve, tmp_path_factory):
    return ui_site(serve, tmp_path_factory.mktemp("quota-chat"))


def test_quota_exhausted_mid_conversation_is_said_and_the_chat_goes_on(page, chat_site):
    cdp = limit_quota(page, chat_site.origin, TINY_QUOTA)  # every write that needs space is refused
    w = open_chat(page, chat_site)
    send(page, "while full [[tokens=40]]")  # answered: loading the model does not need a write
    page.wait_for_function("() => document.getElementById('chat-notice').textContent.includes('Not saved')")
    said = notice(page)
    assert "quota" in said and "Models" in said, said
    assert page.locator("#messages .msg-assistant[data-status=done]").count() == 1
    shot(page, "quota-not-saved")
    send(page, "still full [[tokens=40]]")  # the page does not hang: a second send is answered
    assert page.locator("#messages .msg-assistant[data-status=done]").count() == 2
    assert "Not saved" in notice(page)

    lift_quota(cdp, chat_site.origin)  # space again: the next change writes what was kept in memory
    send(page, "space again [[tokens=4]]")
    page.wait_for_function("() => !document.getElementById('chat-notice').textContent.includes('Not saved')")
    texts = page.locator("#messages .msg-user .body").all_inner_texts()
    assert len(texts) == 3

    page.reload()
    page.wait_for_selector("#chat[data-state=ready]")
    page.locator("#messages .msg-user").nth(2).wait_for()
    assert page.locator("#messages .msg-user .body").all_inner_texts() == texts
    assert page.locator("#messages .msg-assistant[data-status=done]").count() == 3
    w.assert_clean()
