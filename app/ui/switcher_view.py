"""The header's model switcher on the page (#model-switch; state: :mod:`app.ui.switcher`).

A disclosure: the button shows the chat's model and its state and opens a list of the models one
can switch to (the current one and those stored here) with "All models…", which opens the Models
sheet. Opening the list asks the model manager what is stored (the catalog loads then, once).
Esc closes the list and gives the focus back to the button; so does a click outside it.
"""

from __future__ import annotations

from typing import Any

from app import ffi
from app.ui.store import Scope
from app.ui.switcher import ModelSwitcher, status_words
from app.ui.view import spawn

INSIDE = ("switcher", "toggle-switcher", "switch", "all-models")  # data-action of the switcher's parts


class SwitcherView:
    def __init__(self, switcher: ModelSwitcher, open_sheet: Any) -> None:
        """``open_sheet(name)`` opens one of the page's sheets (app.ui.sheets_view.SheetsView.open)."""
        self.switcher = switcher
        self.open_sheet = open_sheet
        self.scope = Scope()
        self.root = ffi.node("model-switch")
        self.button = ffi.node("model-switch-button")
        self.menu = ffi.node("model-switch-menu")
        self.list = ffi.node("model-switch-list")
        s = self.scope
        s.effect(self._show_label)
        s.effect(self._show_open)
        s.effect(self._show_choices)
        s.effect(lambda: ffi.set_text("model-switch-said", switcher.notice.get()))
        s.add(ffi.listen(self.root, "click", self._on_click))
        s.add(ffi.listen(self.root, "keydown", self._on_key))
        s.add(ffi.listen("document", "click", self._on_document_click))

    def _show_label(self) -> None:
        model, words = self.switcher.label.get()
        ffi.set_text("model-switch-name", model)
        ffi.set_text("model-switch-state", words)
        ffi.set_node_attr(self.root, "data-state", words.split(" ")[0] if words else "none")

    def _show_open(self) -> None:
        shown = self.switcher.open.get()
        ffi.set_prop(self.menu, "hidden", not shown)
        ffi.set_node_attr(self.button, "aria-expanded", "true" if shown else "false")

    def _show_choices(self) -> None:
        current = self.switcher.session.model.get()
        items = []
        for model_id in self.switcher.choices.get():
            item = ffi.element("li")
            pick = ffi.element("button", attrs={"type": "button", "class": "choice", "data-action": "switch",
                                                "data-id": model_id})
            ffi.append(pick, ffi.element("span", model_id, attrs={"class": "name"}),
                       ffi.text_node(" "),
                       ffi.element("span", status_words(self.switcher.status(model_id)),
                                   attrs={"class": "badge badge-state"}))
            if model_id == current:
                ffi.set_node_attr(pick, "aria-current", "true")
            ffi.append(item, pick)
            items.append(item)
        ffi.replace_children(self.list, *items)

    # ------------------------------------------------------------------ events

    def _toggle(self) -> None:
        opening = not self.switcher.open.peek()
        self.switcher.open.set(opening)
        if opening:
            spawn(self._refresh())

    async def _refresh(self) -> None:
        try:
            await self.switcher.refresh()
        except Exception as exc:  # noqa: BLE001 - web-llm's module did not load: the current model still shows
            self.switcher.notice.set(f"The stored models could not be listed: {type(exc).__name__}: {exc}")

    def _close(self, *, focus: bool) -> None:
        self.switcher.open.set(False)
        if focus:
            ffi.focus(self.button)

    def _on_click(self, facts: dict[str, Any]) -> bool:
        action = facts.get("action")
        if action == "toggle-switcher":
            self._toggle()
            return True
        if action == "switch" and facts.get("id"):
            model_id = str(facts["id"])
            self._close(focus=True)
            status = self.switcher.statuses.peek().get(model_id)
            if model_id != self.switcher.session.model.peek() or status is None or status.state != "loaded":
                spawn(self.switcher.switch(model_id))
            return True
        if action == "all-models":
            self._close(focus=False)
            self.open_sheet("models")
            return True
        return False

    def _on_key(self, facts: dict[str, Any]) -> bool:
        if facts["key"] == "Escape" and self.switcher.open.peek():
            self._close(focus=True)
            return True
        return False

    def _on_document_click(self, facts: dict[str, Any]) -> bool:
        if self.switcher.open.peek() and facts.get("action") not in INSIDE:
            self.switcher.open.set(False)
        return False

    def dispose(self) -> None:
        self.scope.dispose()
