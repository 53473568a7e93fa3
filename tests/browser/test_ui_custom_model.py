"""A model of the user's own, added through the Models panel's form in real Chromium: checked against
its host (a synthetic MLC model served with CORS on 127.0.0.1), listed with its size, downloaded into
web-llm's real store (web-llm's own hasModelInCache then says so), removed again; bad input and an
unreachable host are refused in words and add nothing."""

from __future__ import annotations

import pytest

from app.runtime import format_bytes
from tests.browser.model_server import ModelServer, SyntheticModel
from tests.browser.test_models import has_model_in_cache
from tests.browser.test_ui_models import open_models, row
from tests.browser.ui_helpers import confirm, open_chat, ui_site

MINE = SyntheticModel("my-own-model-MLC", shards=3, shard_bytes=300_000, seed=31)


@pytest.fixture(scope="module")
def own_models():
    server = ModelServer(MINE)
    yield server
    server.close()


@pytest.fixture(scope="module")
def custom_site(serve, tmp_path_factory):
    return ui_site(serve, tmp_path_factory.mktemp("custom-model"))


def add(page, source, lib, model_id=""):
    page.fill("#add-model-source", source)
    page.fill("#add-model-lib", lib)
    page.fill("#add-model-id", model_id)
    before = page.inner_text("#add-model-said")
    page.click("#add-model-form button[type=submit]")
    # The answer to this check: neither what the last one said nor "Checking…".
    page.wait_for_function("before => ![before, '', 'Checking…'].includes("
                           "document.getElementById('add-model-said').textContent)", arg=before)
    return page.inner_text("#add-model-said")


def test_add_download_and_remove_a_model_of_ones_own(page, custom_site, own_models):
    w = open_chat(page, custom_site, allowed=(own_models.origin,))
    open_models(page)
    page.locator("#add-model > summary").click()
    # The library field suggests the vendored release's own libraries.
    assert page.locator("#model-libs option").count() > 10
    lib = own_models.url(f"/libs/{MINE.name}-webgpu.wasm")

    said = add(page, "ftp://nowhere/model", lib)
    assert said.startswith("InvalidRequest: the model must be an http(s) URL")
    said = add(page, own_models.url("/synth/not-there"), lib)
    assert said.startswith("ModelFetchFailed: could not read not-there's files") and "CORS" in said
    assert row(page, "not-there").count() == 0
    # The browser logs the two 404s the check met (config and manifest); nothing else went wrong.
    assert w.errors == ["Failed to load resource: the server responded with a status of 404 (Not Found)"] * 2
    w.errors.clear()

    said = add(page, own_models.url(f"/{MINE.org}/{MINE.name}"), lib)
    assert said.startswith(f"Added {MINE.name}:") and "4 files" not in said
    page.wait_for_selector(f"#model-detail[data-id='{MINE.name}']")
    assert "your model" in page.inner_text("#model-facts") and page.is_visible("#model-remove")
    assert not [p for p in own_models.requests if "params_shard" in p]  # checked without fetching weights

    page.fill("#model-search", MINE.name)  # listed with the others (the first 60 show unsearched)
    assert format_bytes(MINE.total_bytes) in row(page, MINE.name).inner_text()  # its size, known from the check
    page.click("#model-download")
    page.wait_for_function(f"() => document.querySelector(\"#model-list li[data-id='{MINE.name}'] .badge-state\")"
                           "?.textContent === 'downloaded'", timeout=60_000)
    assert has_model_in_cache(page, own_models, MINE, "cache")
    # Kept across a reload (the record is in IndexedDB), then removed with its files.
    page.reload()
    page.wait_for_selector("#chat[data-state=ready]")
    open_models(page)
    page.fill("#model-search", MINE.name)
    row(page, MINE.name).locator("button.pick").click()
    page.wait_for_selector(f"#model-detail[data-id='{MINE.name}']")
    page.click("#model-remove")
    confirm(page)
    page.wait_for_function("() => document.getElementById('add-model-said').textContent.startsWith('Removed')")
    assert row(page, MINE.name).count() == 0 and not has_model_in_cache(page, own_models, MINE, "cache")
    w.assert_clean()
