"""The conversation list's tools: search (titles and message text), export (this conversation or all,
as Markdown or JSON), import (JSON exported by this app, checked whole first) and delete all.

Mounted with the chat (app/ui/view.py App); the formats are :mod:`app.ui.transfer`.
"""

from __future__ import annotations

import time
from typing import Any

from app import ffi
from app.errors import UsageError
from app.ffi import files
from app.ui.chat import ChatState
from app.ui.store import Scope, untracked
from app.ui.transfer import MAX_IMPORT_BYTES, export_json, export_markdown, parse_import
from app.ui.view import outcome, spawn


def _stamp() -> str:
    return time.strftime("%Y-%m-%d-%H%M", time.localtime())


def _file_name(title: str) -> str:
    safe = "".join(ch if ch.isalnum() or ch in " -_" else " " for ch in title).strip()
    return "-".join(safe.split())[:60] or "conversation"


class LibraryView:
    """#conversation-search and #conversation-tools over the chat's conversations."""

    def __init__(self, chat: ChatState, conversations: Any) -> None:
        self.chat = chat
        self.list = conversations  # the ConversationList (app/ui/view.py) it filters
        self.scope = Scope()
        self.query = ""
        self.scope.effect(self._filter)
        for node_id, event, handler in (("conversation-search", "input", self._on_search),
                                        ("conversation-tools", "click", self._on_tool),
                                        ("import-json", "change", self._on_import)):
            self.scope.add(ffi.listen(ffi.node(node_id), event, handler))

    # ------------------------------------------------------------------ search

    def _on_search(self, facts: dict[str, Any]) -> bool:
        self.query = str(facts.get("value") or "")
        untracked(self._filter)
        return False

    def _filter(self) -> None:
        convs = self.chat.conversations.get()  # again when conversations come or go
        if not self.query.strip():
            self.list.show_only(None)
            ffi.set_text("conversation-found", "")
            return
        found = untracked(lambda: self.chat.search(self.query))
        self.list.show_only({c.id for c in found})
        ffi.set_text("conversation-found", f"{len(found)} of {len(convs)} conversations")

    # ------------------------------------------------------------------ export, import, delete all

    def _on_tool(self, facts: dict[str, Any]) -> bool:
        action = facts.get("action")
        intents = {"export-current-md": self._export_current_md, "export-current-json": self._export_current_json,
                   "export-all-json": self._export_all_json, "export-all-md": self._export_all_md,
                   "delete-all": self._delete_all}
        intent = intents.get(action or "")
        if intent is None:
            return False
        spawn(self._said(intent()))
        return True

    def _current(self) -> Any:
        conv = self.chat.current.peek()
        if conv is None or not conv.messages.peek():
            raise UsageError("no conversation is open")
        return conv

    async def _export_current_md(self) -> str:
        conv = self._current()
        name = f"{_file_name(conv.title.peek())}.md"
        await files.save_text(name, export_markdown([conv]), "text/markdown")
        return f"Exported {name}."

    async def _export_current_json(self) -> str:
        conv = self._current()
        name = f"{_file_name(conv.title.peek())}.json"
        await files.save_text(name, export_json([conv], exported=time.time()), "application/json")
        return f"Exported {name}."

    async def _export_all_json(self) -> str:
        convs = self.chat.conversations.peek()
        name = f"conversations-{_stamp()}.json"
        await files.save_text(name, export_json(convs, exported=time.time()), "application/json")
        return f"Exported {len(convs)} conversations to {name}."

    async def _export_all_md(self) -> str:
        convs = self.chat.conversations.peek()
        name = f"conversations-{_stamp()}.md"
        await files.save_text(name, export_markdown(convs), "text/markdown")
        return f"Exported {len(convs)} conversations to {name}."

    async def _delete_all(self) -> str:
        count = len(self.chat.conversations.peek())
        if not count or not await ffi.confirm(f"Delete all {count} conversations? Export them first to keep a "
                                              "copy.", "Delete all"):
            return ""
        return f"Deleted {await self.chat.delete_all()} conversations."

    def _on_import(self, _facts: dict[str, Any]) -> bool:
        spawn(self._said(self._import()))
        return False

    async def _import(self) -> str:
        chosen = await files.read_chosen(ffi.node("import-json"), MAX_IMPORT_BYTES)
        if chosen is None:
            return ""
        added, skipped = await self.chat.import_records(parse_import(chosen["text"]))
        also = f"; {skipped} already here, left as they are" if skipped else ""
        return f"Imported {added} conversations from {chosen['name']}{also}."

    async def _said(self, intent: Any) -> None:
        await outcome(intent, "transfer-said")  # a refusal in words: nothing changed

    def dispose(self) -> None:
        self.scope.dispose()
