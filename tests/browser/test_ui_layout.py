"""The chat-first layout as users meet it: the header's sheets (Models, Settings, Python, Device, and
on a phone the conversation list), opened and closed by mouse and keyboard at a phone's, a tablet's and
a desktop's width; the empty chat's starter prompts; and the header's model switcher, which follows a
model's download and load and switches the chat's model.

The switcher test downloads real files from the synthetic model server (tests/browser/model_server.py)
and loads through web-llm's real worker with the engine double, as test_ui_models.py does.
"""

from __future__ import annotations

import pytest

from tests.browser.model_server import ModelServer, SyntheticModel
from tests.browser.ui_helpers import answers, close_sheet, open_chat, open_sheet, shot, ui_site

MODEL_A = SyntheticModel("synth-layout-a", shards=6, shard_bytes=400_000, seed=21)
MODEL_B = SyntheticModel("synth-layout-b", shards=2, shard_bytes=200_000, seed=22)


def focused(page) -> str:
    return page.evaluate("() => document.activeElement ? document.activeElement.id : ''")


def box(page, selector: str) -> dict:
    return page.locator(selector).bounding_box()


@pytest.fixture(scope="module")
def layout_site(serve, tmp_path_factory):
    return ui_site(serve, tmp_path_factory.mktemp("layout"))


def test_sheets_open_and_close_by_keyboard_and_cover_a_phone_screen_and_starters_send(page, layout_site):
    page.set_viewport_size({"width": 1440, "height": 900})
    w = open_chat(page, layout_site)
    # Empty: the starter prompts are offered; one click sends one.
    starters = page.locator("#starters button")
    assert starters.count() >= 3
    first = starters.first.inner_text()
    starters.first.click()
    answers(page).last.locator(".meta").wait_for()
    page.locator("#messages .msg-assistant[data-status=done]").wait_for()
    assert page.locator("#messages .msg-user .body").first.inner_text() == first
    assert answers(page).last.locator(".body").inner_text() == f"Echo: {first}"
    assert page.is_hidden("#empty-state") and page.input_value("#prompt") == ""

    # Wide: a sheet opens beside the chat, which stays usable.
    page.locator("#open-settings").focus()
    page.keyboard.press("Enter")
    page.wait_for_selector("#settings", state="visible")
    assert page.get_attribute("#open-settings", "aria-expanded") == "true"
    assert page.get_attribute("#open-settings", "aria-controls") == "settings"
    assert focused(page) == "settings"  # the focus went into the sheet
    chat, sheet = box(page, "#chat"), box(page, "#sheets")
    assert chat["x"] + chat["width"] <= sheet["x"] + 1  # beside, not over
    shot(page, "layout-1440-settings")
    # One at a time: Models replaces Settings.
    open_sheet(page, "models")
    assert page.is_hidden("#settings") and page.get_attribute("#open-settings", "aria-expanded") == "false"
    page.wait_for_selector("#models[data-state=ready]")  # the picker mounted on first open
    # Esc in the sheet closes it and gives the focus back to its button.
    page.locator("#model-search").focus()
    page.keyboard.press("Escape")
    page.wait_for_selector("#models", state="hidden")
    assert focused(page) == "open-models"
    assert page.get_attribute("#open-models", "aria-expanded") == "false"
    # And from the button itself: Enter opens, Esc closes.
    page.keyboard.press("Enter")
    page.wait_for_selector("#models", state="visible")
    page.locator("#open-models").focus()
    page.keyboard.press("Escape")
    page.wait_for_selector("#models", state="hidden")
    assert focused(page) == "open-models"

    # A tablet: the sheet lies over the chat, on the right.
    page.set_viewport_size({"width": 768, "height": 900})
    open_sheet(page, "device")
    sheet = box(page, "#sheets")
    assert sheet["x"] > 0 and sheet["x"] + sheet["width"] == pytest.approx(768, abs=1)
    assert page.locator("#webgpu-summary").is_visible()
    shot(page, "layout-768-device")
    close_sheet(page, "device")

    # A phone: the conversation list is behind the header's Chats button, the sheets fill the screen.
    page.set_viewport_size({"width": 360, "height": 740})
    assert page.is_hidden("#sidebar") and page.is_visible("#open-conversations")
    chat = box(page, "#chat")
    assert chat["x"] == pytest.approx(0, abs=1) and chat["width"] == pytest.approx(360, abs=1)
    open_sheet(page, "settings")
    sheet = box(page, "#sheets")
    assert (sheet["x"], sheet["y"], sheet["width"], sheet["height"]) == pytest.approx((0, 0, 360, 740), abs=1)
    close = page.locator("#settings .sheet-close")
    assert close.is_visible() and close.inner_text() == "Close"
    shot(page, "layout-360-settings")
    close.click()
    page.wait_for_selector("#settings", state="hidden")
    assert focused(page) == "open-settings"
    # The chat is usable again: a message goes out and is answered.
    page.fill("#prompt", "after the sheet")
    page.press("#prompt", "Enter")
    page.locator("#messages .msg-assistant[data-status=done]").nth(1).wait_for()
    assert answers(page).last.locator(".body").inner_text() == "Echo: after the sheet"
    # The conversation list as a sheet: New chat closes it and the chat is empty again.
    open_sheet(page, "conversations")
    sidebar = box(page, "#sidebar")
    assert (sidebar["width"], sidebar["height"]) == pytest.approx((360, 740), abs=1)
    assert page.locator("#conversation-list li").count() == 1
    shot(page, "layout-360-conversations")
    page.locator("#new-chat").click()
    page.wait_for_selector("#sidebar", state="hidden")
    page.wait_for_selector("#empty-state", state="visible")
    assert focused(page) == "prompt"
    open_sheet(page, "conversations")
    page.keyboard.press("Escape")
    page.wait_for_selector("#sidebar", state="hidden")
    assert focused(page) == "open-conversations"
    w.assert_clean()


@pytest.fixture(scope="module")
def models():
    server = ModelServer(MODEL_A, MODEL_B)
    yield server
    server.close()


@pytest.fixture(scope="module")
def switcher_site(serve, models, tmp_path_factory):
    """The chat's model is MODEL_A, not downloaded yet; the double's models and MODEL_B are listed too."""
    return ui_site(serve, tmp_path_factory.mktemp("switcher"), model=MODEL_A.name, auto_title=True,
                   extra_models=(models.record(MODEL_A), models.record(MODEL_B)))


# Every text the switcher's state word shows, in order (a MutationObserver: progress can pass quickly).
RECORD_WORDS = """() => {
  const el = document.getElementById('model-switch-state');
  window.__words = [el.textContent];
  new MutationObserver(() => { if (window.__words.at(-1) !== el.textContent) window.__words.push(el.textContent); })
    .observe(el, {childList: true, characterData: true, subtree: true});
}"""


def words(page) -> list[str]:
    return page.evaluate("() => window.__words.splice(0)")


def switcher_shows(page, model_id: str, state: str) -> None:
    page.wait_for_function("([m, s]) => document.getElementById('model-switch-name').textContent === m"
                           " && document.getElementById('model-switch-state').textContent === s",
                           arg=[model_id, state], timeout=30_000)


def pick(page, model_id: str) -> None:
    page.fill("#model-search", model_id)
    page.locator(f"#model-list li[data-id='{model_id}'] button.pick").click()
    page.wait_for_selector(f"#model-detail[data-id='{model_id}']")


def test_the_switcher_follows_a_download_and_a_load_and_switches_the_chats_model(page, switcher_site, server):
    page.set_viewport_size({"width": 1280, "height": 900})
    w = open_chat(page, switcher_site, allowed=(server.origin,))
    # Before anything asked for the catalog: the model's id, and that it is not loaded.
    switcher_shows(page, MODEL_A.name, "not loaded")
    assert not any("web-llm" in u for u in w.requests)  # the switcher costs no catalog at start
    page.evaluate(RECORD_WORDS)

    # A download started in the Models sheet shows in the header: its share, then "downloaded".
    open_sheet(page, "models")
    page.wait_for_selector("#models[data-state=ready]")
    pick(page, MODEL_A.name)
    switcher_shows(page, MODEL_A.name, "not downloaded")  # the manager is known now: nothing is stored
    shard = MODEL_A.shard_path(3)
    server.hold_after[shard] = 200_000
    page.click("#model-download")
    page.wait_for_function("() => { const m = /^downloading (\\d+)%$/.exec("
                           "document.getElementById('model-switch-state').textContent); return m && +m[1] >= 40; }")
    shot(page, "layout-switcher-downloading")
    server.release()
    switcher_shows(page, MODEL_A.name, "downloaded")
    pick(page, MODEL_B.name)
    page.click("#model-download")
    page.wait_for_selector(f"#model-detail[data-id='{MODEL_B.name}'][data-state=downloaded]", timeout=30_000)
    close_sheet(page, "models")

    # The chat's first message loads the model: the header says how far, then "ready".
    page.fill("#prompt", "hello [[tokens=3]]")
    page.press("#prompt", "Enter")
    page.locator("#messages .msg-assistant[data-status=done]").wait_for(timeout=30_000)
    assert MODEL_A.name in answers(page).last.locator(".meta").inner_text()
    switcher_shows(page, MODEL_A.name, "ready")
    seen = words(page)
    downloading = [int(t.split()[1][:-1]) for t in seen if t.startswith("downloading ")]
    loading = [int(t.split()[1][:-1]) for t in seen if t.startswith("loading ")]
    assert any(0 < n < 100 for n in downloading) and downloading == sorted(downloading), seen
    assert loading and loading == sorted(loading), seen
    assert seen.index("downloaded") < seen.index(f"loading {loading[0]}%") < seen.index("ready"), seen

    # Switch from the header: the list has the current model and the stored one; picking it loads it
    # and the next answer comes from it.
    page.locator("#model-switch-button").click()
    menu = page.locator("#model-switch-menu")
    menu.wait_for()
    assert page.get_attribute("#model-switch-button", "aria-expanded") == "true"
    choices = page.locator("#model-switch-list button")
    page.wait_for_function("([n]) => document.querySelectorAll('#model-switch-list button').length === n",
                           arg=[2])
    assert [c.get_attribute("data-id") for c in choices.all()] == [MODEL_A.name, MODEL_B.name]
    assert choices.first.get_attribute("aria-current") == "true"
    assert "downloaded" in choices.nth(1).inner_text()
    shot(page, "layout-switcher-open")
    choices.nth(1).click()
    menu.wait_for(state="hidden")
    assert focused(page) == "model-switch-button"
    switcher_shows(page, MODEL_B.name, "ready")
    assert any(t.startswith("loading ") for t in words(page))
    page.fill("#prompt", "and now? [[tokens=3]]")
    page.press("#prompt", "Enter")
    page.locator("#messages .msg-assistant[data-status=done]").nth(1).wait_for(timeout=30_000)
    assert MODEL_B.name in answers(page).last.locator(".meta").inner_text()
    assert MODEL_B.name in page.inner_text("#backend-notice")

    # By keyboard: Enter opens the list, Esc closes it; "All models…" opens the Models sheet.
    page.locator("#model-switch-button").focus()
    page.keyboard.press("Enter")
    menu.wait_for()
    page.keyboard.press("Escape")
    menu.wait_for(state="hidden")
    assert focused(page) == "model-switch-button"
    page.keyboard.press("Enter")
    page.get_by_role("button", name="All models…").click()
    page.wait_for_selector("#models", state="visible")
    assert page.get_attribute("#open-models", "aria-expanded") == "true" and menu.is_hidden()
    assert f"Chat model: {MODEL_B.name} (loaded)" == page.inner_text("#model-current")
    w.assert_clean()
