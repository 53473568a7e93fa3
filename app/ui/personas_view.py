"""Personas in the page: ``/`` in the composer lists them (arrows, Enter picks, Esc closes), the line
above the composer says which one the conversation uses (× goes back to Settings' system prompt),
and Settings -> Personas creates, edits and deletes the user's own. State: :mod:`app.ui.personas`.
"""

from __future__ import annotations

from typing import Any

from app import ffi
from app.ui.chat import ChatState
from app.ui.conversations import ScopedKv
from app.ui.personas import Persona, Personas
from app.ui.store import Scope, Signal
from app.ui.view import confirm_then, outcome, spawn


class PersonasView:
    def __init__(self, chat: ChatState, chat_view: Any, settings_store: Any) -> None:
        self.chat = chat
        self.personas = Personas(ScopedKv(settings_store, "persona"))
        self.scope = Scope()
        self.found: Signal[list[Persona]] = Signal([])  # the open suggestion list ([]: closed)
        self.active: Signal[int] = Signal(0)
        self.list = ffi.node("persona-suggest")
        s = self.scope
        s.effect(self._show_suggestions)
        s.effect(self._show_line)
        s.effect(self._show_manager)
        s.add(ffi.listen(ffi.node("prompt"), "input", self._on_input))
        s.add(ffi.listen(self.list, "click", self._on_pick_click))
        s.add(ffi.listen(ffi.node("persona-clear"), "click", self._on_clear))
        s.add(ffi.listen(ffi.node("persona-list"), "change", self._on_manage_pick))
        s.add(ffi.listen(ffi.node("persona-save"), "click", self._on_save))
        s.add(ffi.listen(ffi.node("persona-delete"), "click", self._on_delete))
        chat_view.key_hooks.append(self._on_key)
        s.add(lambda: chat_view.key_hooks.remove(self._on_key))
        spawn(self.personas.load())

    # ------------------------------------------------------------------ "/" in the composer

    def _on_input(self, facts: dict[str, Any]) -> bool:
        text = str(facts.get("value") or "")
        if text.startswith("/") and "\n" not in text:
            self.found.set(self.personas.matching(text[1:])[:8])
            self.active.set(0)
        else:
            self.found.set([])
        return False

    def _on_key(self, facts: dict[str, Any]) -> bool | None:
        found = self.found.peek()
        if not found:
            return None
        key = facts.get("key")
        if key in ("ArrowDown", "ArrowUp"):
            self.active.set((self.active.peek() + (1 if key == "ArrowDown" else -1)) % len(found))
            return True
        if key in ("Enter", "Tab") and not facts.get("composing"):
            self._pick(found[self.active.peek()])
            return True
        if key == "Escape":
            self.found.set([])
            return True
        return None

    def _on_pick_click(self, facts: dict[str, Any]) -> bool:
        name = facts.get("id")
        match = [p for p in self.found.peek() if p.name == name]
        if match:
            self._pick(match[0])
            return True
        return False

    def _pick(self, persona: Persona) -> None:
        self.chat.use_persona(persona.name, persona.prompt)
        self.found.set([])
        prompt = ffi.node("prompt")
        ffi.set_prop(prompt, "value", "")
        ffi.focus(prompt)

    def _on_clear(self, _facts: dict[str, Any]) -> bool:
        self.chat.use_persona(None, None)
        return True

    def _show_suggestions(self) -> None:
        found, active = self.found.get(), self.active.get()
        items = []
        for i, persona in enumerate(found):
            item = ffi.element("li", attrs={"role": "option", "data-id": persona.name, "id": f"persona-option-{i}",
                                            "aria-selected": "true" if i == active else "false"})
            ffi.append(item, ffi.element("b", persona.name), ffi.text_node(" " + _short(persona.prompt)))
            items.append(item)
        ffi.replace_children(self.list, *items)
        ffi.set_prop(self.list, "hidden", not found)
        prompt = ffi.node("prompt")
        # A textarea is a textbox, which has no aria-expanded (axe: aria-allowed-attr); the open list
        # is told by aria-activedescendant and the listbox itself (aria-controls, not hidden).
        ffi.set_node_attr(prompt, "aria-activedescendant", f"persona-option-{active}" if found else None)

    def _show_line(self) -> None:
        conv = self.chat.current.get()
        name = conv.persona.get() if conv is not None else None
        ffi.set_prop(ffi.node("persona-line"), "hidden", name is None)
        ffi.set_text("persona-name", name or "")

    # ------------------------------------------------------------------ Settings -> Personas

    def _show_manager(self) -> None:
        options = [ffi.element("option", "New persona…", attrs={"value": ""})]
        for persona in self.personas.all.get():
            label = persona.name + (" (built in)" if persona.builtin else "")
            options.append(ffi.element("option", label, attrs={"value": persona.name}))
        ffi.replace_children(ffi.node("persona-list"), *options)

    def _on_manage_pick(self, facts: dict[str, Any]) -> bool:
        name = facts.get("value") or ""
        persona = next((p for p in self.personas.all.peek() if p.name == name), None)
        ffi.set_prop(ffi.node("persona-name-input"), "value", persona.name if persona else "")
        ffi.set_prop(ffi.node("persona-prompt"), "value", persona.prompt if persona else "")
        ffi.set_prop(ffi.node("persona-delete"), "hidden", persona is None or persona.builtin)
        return False

    def _on_save(self, _facts: dict[str, Any]) -> bool:
        name = str(ffi.get_prop(ffi.node("persona-name-input"), "value") or "")
        prompt = str(ffi.get_prop(ffi.node("persona-prompt"), "value") or "")
        spawn(self._said(self._save(name, prompt)))
        return True

    async def _save(self, name: str, prompt: str) -> str:
        persona = await self.personas.save(name, prompt)
        ffi.set_prop(ffi.node("persona-list"), "value", persona.name)
        ffi.set_prop(ffi.node("persona-delete"), "hidden", False)
        return f"Saved {persona.name}. Type / in the message box to use it."

    def _on_delete(self, _facts: dict[str, Any]) -> bool:
        name = str(ffi.get_prop(ffi.node("persona-list"), "value") or "")
        if name:
            confirm_then(f"Delete the persona {name}?", lambda: self._said(self._delete(name)))
        return True

    async def _delete(self, name: str) -> str:
        await self.personas.delete(name)
        ffi.set_prop(ffi.node("persona-name-input"), "value", "")
        ffi.set_prop(ffi.node("persona-prompt"), "value", "")
        ffi.set_prop(ffi.node("persona-delete"), "hidden", True)
        return f"Deleted {name}."

    async def _said(self, intent: Any) -> None:
        await outcome(intent, "persona-said")

    def dispose(self) -> None:
        self.scope.dispose()


def _short(text: str, limit: int = 70) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
