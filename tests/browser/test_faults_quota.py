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
from tests.browser.ui_helpers import answers, confirm, open_chat, open_sheet, shot, ui_site

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


# One big shard held part-way by the server: the page's staging timer (2 s) then tries to keep the
# bytes received so far in IndexedDB, which the quota refuses, while the store's own write still
# waits on the stream. Before every rejection from static/storage.js was a plain Error, the refused
# part left Python waiting on the download for good (and Cancel and Delete behind it).
BIG = SyntheticModel("synth-quota-big", shards=1, shard_bytes=6_000_000, seed=21)


@pytest.fixture(scope="module")
def models():
    server = ModelServer(BIG)
    yield server
    server.close()


@pytest.fixture(scope="module")
def picker_site(serve, models, tmp_path_factory):
    config_file = tmp_path_factory.mktemp("quota-models") / "chat-config.json"
    site = serve("/", overlay={**OVERLAY, "static/chat-config.json": config_file})
    model_list = app_config(site.origin)["model_list"] + [models.record(BIG)]
    config_file.write_text(json.dumps({"model": CHAT_MODEL, "app_config": {"model_list": model_list},
                                       "policy": "prefer-local", "cloud": None}))
    return site


def open_models(page, model_id):
    open_sheet(page, "models")
    page.wait_for_selector("#models[data-state=ready]")
    page.fill("#model-search", model_id)
    page.locator(f"#model-list li[data-id='{model_id}'] button.pick").click()
    page.wait_for_selector(f"#model-detail[data-id='{model_id}']")


def test_quota_exhausted_mid_download_fails_at_once_typed_and_cancel_and_delete_still_work(
        page, picker_site, server):
    shard = BIG.shard_path(0)
    cdp = limit_quota(page, picker_site.origin, 1_500_000)  # the small files fit, the shard does not
    w = open_chat(page, picker_site, allowed=(server.origin,))
    open_models(page, BIG.name)
    server.hold_after[shard] = 5_000_000
    page.click("#model-download")
    # The staged part is refused: the download ends with the typed error, said in the panel, within
    # seconds (the staging timer's 2 s and the page's reaction), while the server still holds.
    page.wait_for_function("() => /Download of .* failed: .*refused to store more/"
                           ".test(document.getElementById('model-notice').textContent)", timeout=15_000)
    assert "QuotaExceededError" in page.inner_text("#model-notice")
    page.wait_for_function("() => document.getElementById('model-detail').dataset.state !== 'downloading'")
    assert page.is_visible("#model-download") and not page.is_visible("#model-cancel")
    shot(page, "quota-download-refused")
    server.release()

    # Nothing is stuck behind it: with space again a new download starts, Cancel stops it, Delete
    # removes what it kept.
    lift_quota(cdp, picker_site.origin)
    server.reset()
    server.hold_after[shard] = 1_000_000
    page.click("#model-download")
    page.wait_for_selector("#model-detail[data-state=downloading]")
    page.wait_for_function("() => document.getElementById('model-progress-bar').value > 0.1")
    page.click("#model-cancel")
    page.wait_for_selector("#model-detail[data-state=partial]", timeout=15_000)
    server.release()
    item = page.locator(f"#storage-list li[data-id='{BIG.name}']")
    item.wait_for()
    item.locator("button[data-action=delete]").click()
    confirm(page)
    item.wait_for(state="detached", timeout=15_000)
    page.wait_for_selector("#model-detail[data-state=not-downloaded]")
    w.assert_clean()
