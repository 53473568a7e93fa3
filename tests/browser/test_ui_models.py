"""The model picker as users drive it: find a model, download it (progress, cancel, resume), use it
for the chat, and manage storage.

One model serves both halves: the synthetic model server (tests/browser/model_server.py) serves
its files, which the page downloads for real into web-llm's Cache API store; loading and chatting
go through web-llm's real worker with the engine double, which fakes only model execution (it
fetches nothing, so the record's URLs can point at the synthetic server).
"""

from __future__ import annotations

import json

import pytest

from tests.browser.conftest import PagePython
from tests.browser.double import CHAT_MODEL
from tests.browser.model_server import ModelServer, SyntheticModel
from tests.browser.ui_helpers import answers, confirm, open_chat, open_sheet, shot, ui_site

MODEL_A = SyntheticModel("synth-ui-a", shards=6, shard_bytes=400_000, seed=11)
MODEL_B = SyntheticModel("synth-ui-b", shards=2, shard_bytes=200_000, seed=12)


@pytest.fixture(scope="module")
def models():
    server = ModelServer(MODEL_A, MODEL_B)
    yield server
    server.close()


@pytest.fixture(scope="module")
def picker_site(serve, models, tmp_path_factory):
    """The shipped site; its chat-config.json lists the double's models and the two synthetic ones."""
    return ui_site(serve, tmp_path_factory.mktemp("models"), model=CHAT_MODEL, auto_title=True,
                   extra_models=(models.record(MODEL_A), models.record(MODEL_B)))


def open_models(page):
    """Open the Models sheet (its catalog loads then) and wait until it is ready."""
    open_sheet(page, "models")
    page.wait_for_selector("#models[data-state=ready]")


def row(page, model_id):
    return page.locator(f"#model-list li[data-id='{model_id}']")


def pick(page, model_id):
    page.fill("#model-search", model_id)
    row(page, model_id).locator("button.pick").click()
    page.wait_for_selector(f"#model-detail[data-id='{model_id}']")


def usage(page) -> int:
    return int(page.get_attribute("#quota-bar", "data-usage"))


def test_pick_download_cancel_resume_use_and_chat(page, picker_site, server):
    w = open_chat(page, picker_site, allowed=(server.origin,))
    assert not any("web-llm" in u for u in w.requests)  # the catalog loads with the panel, not before
    open_models(page)
    # The whole catalog is listed (web-llm's prebuilt models and the configured ones), searchable.
    assert "models" in page.inner_text("#model-count")
    total = int(page.inner_text("#model-count").split()[0])
    assert total > 100
    page.fill("#model-search", "synth ui")
    page.wait_for_function("() => document.querySelectorAll('#model-list li').length === 2")
    page.select_option("#model-sort", "vram")
    assert page.locator("#model-list li").count() == 2
    # Nothing was sized yet: no request has reached the model server.
    assert server.requests == {}

    pick(page, MODEL_A.name)
    badges = page.locator("#model-detail .badge")
    page.wait_for_selector("#model-detail .badge-size")
    texts = badges.all_inner_texts()
    from app.runtime import format_bytes

    assert format_bytes(MODEL_A.total_bytes) in texts  # the download size, from the model's manifest
    assert "0.3 GiB VRAM" in texts and "2k context" in texts and "fits this GPU" in texts
    assert row(page, MODEL_A.name).locator(".badge-size").inner_text() == format_bytes(MODEL_A.total_bytes)

    # Download, holding one shard half-way so the progress can be seen and cancelled.
    shard = MODEL_A.shard_path(2)
    server.hold_after[shard] = 200_000
    page.click("#model-download")
    page.wait_for_function("""() => {
        const t = document.getElementById('model-progress-text').textContent;
        return /Downloading · \\d+% · .* of .* · .*files/.test(t) && !document.getElementById('model-progress').hidden;
    }""")
    page.wait_for_function("() => document.getElementById('model-progress-bar').value > 0.5")
    assert row(page, MODEL_A.name).locator(".badge-state").inner_text().startswith("downloading ")
    assert page.is_visible("#model-cancel") and not page.is_visible("#model-download")
    shot(page, "downloading")
    page.click("#model-cancel")
    page.wait_for_selector("#model-detail[data-state=partial]")
    server.release()
    assert page.inner_text("#model-download") == "Resume download"
    assert row(page, MODEL_A.name).locator(".badge-state").inner_text() == "partial"
    assert page.is_hidden("#model-progress")

    # Resume fetches only what is missing, from where the held shard stopped.
    page.click("#model-download")
    page.wait_for_selector("#model-detail[data-state=downloaded]", timeout=30_000)
    assert (shard, 200_000) in server.ranges
    assert sum(server.sent[p] for p in MODEL_A.files) == MODEL_A.total_bytes
    stored = page.locator(f"#storage-list li[data-id='{MODEL_A.name}']")
    stored.wait_for()
    assert format_bytes(MODEL_A.total_bytes) in stored.inner_text()
    assert "never used" in stored.inner_text()

    # Use it for the chat: it loads (through the engine worker), the chat says so, and answers.
    page.click("#model-use")
    page.wait_for_selector("#model-detail[data-state=loaded]", timeout=30_000)
    assert page.inner_text("#model-use") == "In use"
    assert f"Chat model: {MODEL_A.name} (loaded)" == page.inner_text("#model-current")
    assert MODEL_A.name in page.inner_text("#backend-notice")
    page.fill("#prompt", "hello [[tokens=8]]")
    page.press("#prompt", "Enter")
    page.locator("#messages .msg-assistant[data-status=done]").wait_for()
    assert MODEL_A.name in answers(page).last.locator(".meta").inner_text()
    page.wait_for_function(f"() => document.querySelector(\"#storage-list li[data-id='{MODEL_A.name}']\")"
                           ".textContent.includes('used just now')")
    w.assert_clean()


def test_delete_from_the_storage_panel_updates_the_quota_bar(page, picker_site, server):
    w = open_chat(page, picker_site, allowed=(server.origin,))
    open_models(page)
    for model in (MODEL_B, MODEL_A):
        pick(page, model.name)
        page.click("#model-download")
        page.wait_for_selector(f"#model-detail[data-id='{model.name}'][data-state=downloaded]", timeout=30_000)
    page.wait_for_selector(f"#storage-list li[data-id='{MODEL_B.name}']")
    before = usage(page)
    assert before == MODEL_A.total_bytes + MODEL_B.total_bytes
    page.locator(f"#storage-list li[data-id='{MODEL_A.name}'] button[data-action=delete]").click()
    confirm(page)
    page.wait_for_selector(f"#storage-list li[data-id='{MODEL_A.name}']", state="detached")
    after = usage(page)
    assert before - after == MODEL_A.total_bytes
    assert page.evaluate("document.getElementById('quota-bar').value") > 0
    assert page.get_attribute("#model-detail", "data-state") == "not-downloaded"
    assert page.inner_text("#model-download") == "Download"
    # Least recently used goes next: the remaining model.
    page.click("#evict-lru")
    page.wait_for_selector(f"#storage-list li[data-id='{MODEL_B.name}']", state="detached")
    assert "No model is stored." in page.inner_text("#storage-list")
    w.assert_clean()


def test_a_partial_download_offers_resume_after_a_reload(page, picker_site, server):
    w = open_chat(page, picker_site, allowed=(server.origin,))
    open_models(page)
    shard = MODEL_B.shard_path(1)
    server.hold_after[shard] = 100_000
    pick(page, MODEL_B.name)
    page.click("#model-download")
    py = PagePython(page)
    py(f"""
import asyncio
from app import ffi
while (await ffi.staging_list()).get({server.url(shard)!r}, 0) < 100_000:
    await asyncio.sleep(0.05)   # until the held shard's first part is staged
""")
    page.reload()
    server.release()
    page.wait_for_selector("#chat[data-state=ready]")
    open_models(page)
    page.wait_for_selector(f"#storage-list li[data-id='{MODEL_B.name}']")
    page.fill("#model-search", MODEL_B.name)
    assert row(page, MODEL_B.name).locator(".badge-state").inner_text() == "partial"
    pick(page, MODEL_B.name)
    assert page.inner_text("#model-download") == "Resume download"
    page.click("#model-download")
    page.wait_for_selector("#model-detail[data-state=downloaded]", timeout=30_000)
    assert (shard, 100_000) in server.ranges
    w.assert_clean()
