"""Personas in real Chromium (the engine double answers through web-llm's real worker path): "/" in
the composer lists them and the keyboard picks one, the conversation then sends its system prompt
(and keeps it across a reload), and Settings creates, uses and deletes one of the user's own."""

from __future__ import annotations

import pytest

from app.ui.personas import BUILTIN
from tests.browser.conftest import READY_TIMEOUT_MS, PagePython
from tests.browser.test_ui_reasoning import RECORD_REQUESTS
from tests.browser.ui_helpers import confirm, open_chat, open_sheet, ui_site

TUTOR = next(p for p in BUILTIN if p.name == "Python tutor")


@pytest.fixture(scope="module")
def persona_site(serve, tmp_path_factory):
    return ui_site(serve, tmp_path_factory.mktemp("personas"))


def options(page):
    return page.eval_on_selector_all("#persona-suggest li", "items => items.map(i => i.dataset.id)")


def test_slash_lists_personas_and_the_keyboard_picks_one_for_the_conversation(page, persona_site):
    w = open_chat(page, persona_site)
    py = PagePython(page)
    py(RECORD_REQUESTS)
    prompt = page.locator("#prompt")
    prompt.type("/")
    page.wait_for_selector("#persona-suggest:not([hidden])")
    assert options(page) == sorted((p.name for p in BUILTIN), key=str.casefold)
    prompt.type("tu")
    page.wait_for_function("() => document.querySelectorAll('#persona-suggest li').length === 1")
    assert options(page) == ["Python tutor"] and prompt.get_attribute("aria-activedescendant") == "persona-option-0"
    prompt.press("Enter")  # picks; sends nothing
    page.wait_for_selector("#persona-suggest", state="hidden")
    assert prompt.input_value() == "" and page.locator("#messages .msg").count() == 0
    assert page.inner_text("#persona-name") == "Python tutor"
    prompt.fill("what is a list? [[tokens=3]]")
    prompt.press("Enter")
    page.locator("#messages .msg-assistant[data-status=done]").wait_for(timeout=READY_TIMEOUT_MS)
    assert py("sent[-1]['messages'][0]") == {"role": "system", "content": TUTOR.prompt}
    # Escape closes the list without picking; the text stays for the user to edit.
    prompt.type("/con")
    page.wait_for_selector("#persona-suggest:not([hidden])")
    prompt.press("Escape")
    page.wait_for_selector("#persona-suggest", state="hidden")
    assert prompt.input_value() == "/con"
    prompt.fill("")
    page.reload()
    page.wait_for_selector("#chat[data-state=ready]", timeout=READY_TIMEOUT_MS)
    page.wait_for_function("() => document.getElementById('persona-name').textContent === 'Python tutor'")
    # × goes back to Settings' system prompt, in a new conversation (this one keeps its persona).
    page.click("#persona-clear")
    page.wait_for_selector("#persona-line", state="hidden")
    assert page.locator("#messages .msg").count() == 0
    w.assert_clean()


def test_a_persona_of_ones_own_is_saved_used_and_deleted(page, persona_site):
    w = open_chat(page, persona_site)
    open_sheet(page, "settings")
    page.click("#persona-save")
    page.wait_for_function("() => document.getElementById('persona-said').textContent.startsWith('InvalidRequest')")
    page.fill("#persona-name-input", "Pirate")
    page.fill("#persona-prompt", "Answer like a pirate.")
    page.click("#persona-save")
    page.wait_for_function("() => document.getElementById('persona-said').textContent.startsWith('Saved Pirate')")
    page.fill("#prompt", "")
    page.locator("#prompt").type("/pira")
    page.wait_for_function("() => document.querySelector('#persona-suggest li')?.dataset.id === 'Pirate'")
    page.locator("#persona-suggest li[data-id='Pirate']").click()
    page.wait_for_function("() => document.getElementById('persona-name').textContent === 'Pirate'")
    # A built-in persona cannot be deleted; one's own can.
    page.select_option("#persona-list", "Concise")
    assert page.is_hidden("#persona-delete")
    page.select_option("#persona-list", "Pirate")
    page.click("#persona-delete")
    confirm(page)
    page.wait_for_function("() => document.getElementById('persona-said').textContent === 'Deleted Pirate.'")
    assert "Pirate" not in page.eval_on_selector_all("#persona-list option", "os => os.map(o => o.value)")
    w.assert_clean()
