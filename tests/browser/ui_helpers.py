"""Shared by the chat UI tests: a site whose chat talks to the engine double, and page helpers."""

from __future__ import annotations

import json
from pathlib import Path

from tests.browser.conftest import READY_TIMEOUT_MS, open_app
from tests.browser.double import CHAT_MODEL, EMBED_MODEL, OVERLAY, app_config

SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-output" / "screenshots"


def ui_site(serve, tmp_dir: Path, *, cloud: dict | None = None, model: str | None = CHAT_MODEL,
            overlay: dict[str, Path] | None = None, limits: dict | None = None, auto_title: bool = False,
            embedding_model: str = EMBED_MODEL, extra_models: tuple[dict, ...] = ()):
    """A server whose static/chat-config.json selects the double's model (and ``cloud``, ``limits``):
    config only; the page's code is the shipped code (plus the double's worker, as in test_adapter,
    and ``overlay``). Titles are the first words unless ``auto_title``: the double would answer the
    title request with an echo, and most tests find conversations by their first words
    (tests/browser/test_ui_titles.py tests the model-written titles). ``extra_models``: web-llm model
    records listed after the double's (e.g. a synthetic model server's)."""
    config_file = tmp_dir / "chat-config.json"
    site = serve("/", overlay={**OVERLAY, **(overlay or {}), "static/chat-config.json": config_file})
    catalog = app_config(site.origin)
    catalog = {**catalog, "model_list": catalog["model_list"] + list(extra_models)}
    config = {"model": model, "app_config": catalog, "policy": "prefer-local", "cloud": cloud,
              "auto_title": auto_title, "embedding_model": embedding_model}
    if limits is not None:
        config["limits"] = limits
    config_file.write_text(json.dumps(config))
    return site


def open_chat(page, site, allowed=()):
    """Open the app and wait until the chat is mounted and knows what answers."""
    w = open_app(page, site, allowed)
    page.wait_for_selector("#chat[data-state=ready]", timeout=READY_TIMEOUT_MS)
    page.wait_for_selector("#backend-notice:not(:empty)", timeout=READY_TIMEOUT_MS)
    return w


# The header's sheets (app/ui/sheets.py): name -> the sheet's element id; its button is #open-<name>.
SHEETS = {"conversations": "sidebar", "models": "models", "settings": "settings", "python": "python",
          "device": "device", "files": "files"}


def open_sheet(page, name: str):
    """Open one of the page's sheets with its header button, as a user does; wait until it shows.
    Returns the sheet's locator. (Open already: left open.)"""
    page.wait_for_selector("#chat[data-state=ready]", timeout=READY_TIMEOUT_MS)  # its button works once mounted
    button = page.locator(f"#open-{name}")
    if button.get_attribute("aria-expanded") != "true":
        button.click()
    sheet = page.locator(f"#{SHEETS[name]}")
    sheet.wait_for(state="visible")
    return sheet


def close_sheet(page, name: str) -> None:
    """Close an open sheet with its Close button; wait until it is gone."""
    page.locator(f"#{SHEETS[name]} .sheet-close").click()
    page.wait_for_selector(f"#open-{name}[aria-expanded=false]")


def shot(page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def answers(page):
    return page.locator("#messages .msg-assistant")


# The conversations kept in IndexedDB, each put back together from its records (a header, one record
# per message, ordered as app/ui/conversations.py orders them); deleted ones (tombstones) left out.
READ_STORED = """
() => new Promise((resolve, reject) => {
  const open = indexedDB.open('webllm-py');
  open.onerror = () => reject(open.error);
  open.onsuccess = () => {
    const store = open.result.transaction('conversations').objectStore('conversations');
    const keys = store.getAllKeys(), values = store.getAll();
    values.onerror = () => reject(values.error);
    values.onsuccess = () => {
      open.result.close();
      const convs = {}, messages = {};
      keys.result.forEach((key, i) => {
        if (key.endsWith('#deleted')) return;
        const [conv, message] = key.split('/');
        if (message) (messages[conv] = messages[conv] || []).push(values.result[i]);
        else convs[conv] = {...values.result[i], messages: values.result[i].messages || []};
      });
      for (const [conv, list] of Object.entries(messages)) {
        if (!convs[conv]) continue;
        convs[conv].messages = list.sort((a, b) => a.at - b.at || a.n - b.n || (a.id < b.id ? -1 : 1));
      }
      resolve(Object.values(convs));
    };
  };
})
"""


def confirm(page, answer: str = "yes") -> str:
    """Answer the page's own confirmation (<dialog id="confirm-dialog">): "yes" presses its confirming
    button, "no" Cancel. Returns the question it asked."""
    page.wait_for_selector("#confirm-dialog[open]")
    question = page.inner_text("#confirm-text")
    page.click(f"#confirm-{answer}")
    page.wait_for_selector("#confirm-dialog", state="hidden")
    return question
