"""The sheets on the page (state: :mod:`app.ui.sheets`): the header's buttons open them, Close or Esc
shuts them and gives the focus back to the sheet's button.

Each sheet's button carries ``aria-expanded`` and ``aria-controls``; ``#main[data-sheet]`` names the
open one, from which static/app.css lays it out (beside the chat, over it, or full screen). Opening
a sheet moves the focus into it. Esc pressed inside a sheet (or on its button) closes it, unless a
control nearer the key handled it first (a rename box, the Python editor).
"""

from __future__ import annotations

from typing import Any

from app import ffi
from app.ui.sheets import SHEETS, Sheets
from app.ui.store import Scope

NARROW_ONLY = "conversations"  # a column beside the chat on a wide screen: shown by data-open, not hidden


class SheetsView:
    def __init__(self, sheets: Sheets) -> None:
        self.sheets = sheets
        self.scope = Scope()
        self.main = ffi.node("main")
        self._buttons = {name: ffi.node(f"open-{name}") for name in SHEETS}
        self._nodes = {name: ffi.node(element_id) for name, element_id in SHEETS.items()}
        s = self.scope
        for name in SHEETS:
            s.add(ffi.listen(self._buttons[name], "click", lambda _f, name=name: self._on_button(name)))
            s.add(ffi.listen(self._buttons[name], "keydown", lambda f: self._on_key(f, None)))
            s.add(ffi.listen(self._nodes[name], "keydown", lambda f, name=name: self._on_key(f, name)))
            s.add(ffi.listen(self._nodes[name], "click", self._on_sheet_click))
        s.effect(self._show)

    def _show(self) -> None:
        current = self.sheets.current.get()
        for name, node in self._nodes.items():
            ffi.set_node_attr(self._buttons[name], "aria-expanded", "true" if name == current else "false")
            if name == NARROW_ONLY:
                ffi.set_node_attr(node, "data-open", "true" if name == current else None)
            else:
                ffi.set_prop(node, "hidden", name != current)
        ffi.set_node_attr(self.main, "data-sheet", current)

    # ------------------------------------------------------------------ intents

    def open(self, name: str) -> None:
        """Open ``name`` and put the focus in it."""
        self.sheets.show(name)
        ffi.focus(self._nodes[name])

    def close(self, *, focus: bool = True) -> None:
        """Close the open sheet; with ``focus``, its button gets the focus back."""
        name = self.sheets.close()
        if name is not None and focus:
            ffi.focus(self._buttons[name])

    # ------------------------------------------------------------------ events

    def _on_button(self, name: str) -> bool:
        if self.sheets.current.peek() == name:
            self.close()
        else:
            self.open(name)
        return True

    def _on_key(self, facts: dict[str, Any], inside: str | None) -> bool:
        """Esc inside the open sheet (``inside``), or on a header button (None): close it."""
        current = self.sheets.current.peek()
        if facts["key"] != "Escape" or facts.get("prevented") or current is None:
            return False
        if inside is not None and inside != current:
            return False
        self.close()
        return True

    def _on_sheet_click(self, facts: dict[str, Any]) -> bool:
        action = facts.get("action")
        if action == "close-sheet":
            self.close()
            return True
        if action in ("open", "new-chat") and self.sheets.current.peek() == NARROW_ONLY:
            self.close(focus=False)  # a conversation was picked: the chat takes the screen again
        return False

    def dispose(self) -> None:
        self.scope.dispose()
