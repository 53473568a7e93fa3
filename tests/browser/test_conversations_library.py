"""Conversations the user owns, in real Chromium with real IndexedDB (the engine double answers):
search, export as Markdown and JSON, delete all, import back the same, and a malformed import that
changes nothing."""

from __future__ import annotations

import json

import pytest

from tests.browser.conftest import READY_TIMEOUT_MS
from tests.browser.ui_helpers import READ_STORED, confirm, open_chat, ui_site


@pytest.fixture(scope="module")
def library_site(serve, tmp_path_factory):
    return ui_site(serve, tmp_path_factory.mktemp("library"))


def send(page, text):
    count = page.locator("#messages .msg-assistant[data-status=done]").count()
    page.fill("#prompt", text)
    page.press("#prompt", "Enter")
    page.wait_for_function(f"() => document.querySelectorAll('#messages .msg-assistant[data-status=done]')"
                           f".length > {count}", timeout=READY_TIMEOUT_MS)


def titles(page):
    return page.eval_on_selector_all("#conversation-list li:not([hidden]) .open", "els => els.map(e => e.textContent)")


def download(page, action, tmp_path):
    if not page.is_visible(f"[data-action={action}]"):
        page.locator("#conversation-tools > summary").click()
    with page.expect_download() as info:
        page.click(f"[data-action={action}]")
    path = tmp_path / info.value.suggested_filename
    info.value.save_as(path)
    return path


def test_search_export_delete_all_and_import_restore_the_same_conversations(page, library_site, tmp_path):
    w = open_chat(page, library_site)
    send(page, "apples and pears [[tokens=3]]")
    page.locator("#new-chat").click()
    send(page, "the zebra question")
    send(page, "and a follow-up")
    assert titles(page) == ["the zebra question", "apples and pears [[tokens=3]]"]

    # Search: titles and message text; the count says how many match.
    page.fill("#conversation-search", "echo: AND a")
    page.wait_for_function("() => document.getElementById('conversation-found').textContent === "
                           "'1 of 2 conversations'")
    assert titles(page) == ["the zebra question"]
    page.fill("#conversation-search", "")
    page.wait_for_function("() => document.querySelectorAll('#conversation-list li:not([hidden])').length === 2")

    markdown = download(page, "export-current-md", tmp_path)
    assert markdown.name == "the-zebra-question.md"
    assert markdown.read_text().startswith("# the zebra question\n\n## You\n\nthe zebra question\n\n## Assistant\n\n"
                                           "Echo: the zebra question\n")
    exported = download(page, "export-all-json", tmp_path)
    data = json.loads(exported.read_text())
    assert data["format"] == "py-chat-conversations" and len(data["conversations"]) == 2

    page.click("[data-action=delete-all]")
    confirm(page)
    page.wait_for_function("() => document.getElementById('transfer-said').textContent === 'Deleted 2 conversations.'")
    assert titles(page) == [] and page.evaluate(READ_STORED) == []

    page.set_input_files("#import-json", str(exported))
    page.wait_for_function("() => document.getElementById('transfer-said').textContent.startsWith('Imported 2')")
    assert titles(page) == ["the zebra question", "apples and pears [[tokens=3]]"]
    again = json.loads(download(page, "export-all-json", tmp_path).read_text())
    assert again["conversations"] == data["conversations"]  # byte for byte, but for the export time
    page.reload()
    page.wait_for_selector("#chat[data-state=ready]", timeout=READY_TIMEOUT_MS)
    assert titles(page) == ["the zebra question", "apples and pears [[tokens=3]]"]
    assert [m["content"] for m in sorted(page.evaluate(READ_STORED), key=lambda c: -c["updated"])[0]["messages"]] == [
        "the zebra question", "Echo: the zebra question", "and a follow-up", "Echo: and a follow-up"]
    w.assert_clean()


def test_a_malformed_import_says_which_field_and_changes_nothing(page, library_site, tmp_path):
    w = open_chat(page, library_site)
    send(page, "keep me as I am")
    before = page.evaluate(READ_STORED)
    shown = titles(page)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"format": "py-chat-conversations", "version": 1, "exported": 0, "conversations": [
        {"id": "fine1", "title": "fine", "messages": []},
        {"id": "bad2", "title": "bad", "messages": [{"id": "m1", "role": "wizard", "content": "x"}]}]}))
    page.locator("#conversation-tools > summary").click()
    page.set_input_files("#import-json", str(bad))
    page.wait_for_function("() => document.getElementById('transfer-said').textContent.startsWith('InvalidRequest')")
    said = page.inner_text("#transfer-said")
    assert "conversations[1].messages[0].role" in said and "nothing was imported" in said
    assert titles(page) == shown and page.evaluate(READ_STORED) == before
    w.assert_clean()
