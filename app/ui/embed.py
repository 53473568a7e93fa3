"""The chat inside another site's page (static/widget.js): a small host API over ``postMessage``.

The widget opens the app in an iframe with ``?embed=1&host=<the host page's origin>`` (and optional
``model``, ``policy``, ``theme``). The app then accepts messages only from that origin and from its
own parent window, and posts answer events only to that origin (app/ffi.py checks ``event.origin``
and ``event.source``; widget.js checks them the other way). Messages are plain JSON objects tagged
``source: "webgpu-chat-host"`` (host -> app) or ``"webgpu-chat"`` (app -> host):

    host -> app   {type: "send", text}            {type: "stop"}
    app -> host   {type: "ready", model}
                  {type: "start", id}  {type: "delta", id, text}  {type: "done", id, text, status, meta}
                  {type: "error", id, message, error}

``open``/``close`` are the widget's own (it shows or hides the iframe and tells the host).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from app.errors import UsageError
from app.ui.store import Effect, Scope, watch

HOST_TAG = "webgpu-chat-host"
APP_TAG = "webgpu-chat"


def host_origin(value: str | None) -> str | None:
    """The embedding page's origin from the ``host`` query parameter (None when absent or malformed)."""
    if not value:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/"):
        return None
    return f"{parts.scheme}://{parts.netloc}"


class HostBridge:
    """Turns host messages into chat intents and the chat's streaming into events for the host."""

    def __init__(self, chat: Any, post: Callable[[dict[str, Any]], None],
                 spawn: Callable[[Any], None]) -> None:
        self.chat = chat
        self._post = post
        self._spawn = spawn
        self.scope = Scope()
        self._text: Effect | None = None
        self.scope.watch(chat.streaming, self._on_streaming)
        self.scope.add(self._end_text)

    def emit(self, type_: str, **fields: Any) -> None:
        self._post({"source": APP_TAG, "type": type_, **fields})

    def handle(self, message: dict[str, Any]) -> None:
        """One message from the host (already checked for origin, source and tag)."""
        kind = message.get("type")
        if kind == "send":
            text = message.get("text")
            if not isinstance(text, str) or not text.strip():
                self.emit("error", id=None, error="InvalidRequest", message="send needs a non-empty text")
            elif self.chat.streaming.peek() is not None:
                self.emit("error", id=None, error="UsageError",
                          message="an answer is still being written: send stop first")
            else:
                self._spawn(self.chat.send(text))
        elif kind == "stop":
            self._spawn(self.chat.stop())
        else:
            self.emit("error", id=None, error="UsageError", message=f"unknown message type {kind!r}")

    def _on_streaming(self, new: Any, old: Any) -> None:
        if old is not None:
            self._end_text()
            status, meta = old.status.peek(), old.meta.peek()
            if status == "error":
                self.emit("error", id=old.id, error=str(meta.get("error", "Error")),
                          message=str(meta.get("error_message", "")))
            else:
                self.emit("done", id=old.id, text=old.text.peek(), status=status,
                          meta={k: v for k, v in meta.items() if isinstance(v, (str, int, float, bool))})
        if new is not None:
            self.emit("start", id=new.id)
            self._text = watch(new.text, lambda text, before: self.emit("delta", id=new.id, text=text[len(before):])
                               if text.startswith(before) else None)

    def _end_text(self) -> None:
        if self._text is not None:
            self._text.dispose()
            self._text = None

    def dispose(self) -> None:
        self.scope.dispose()


def refusal(own_origin: str, ancestors: list[str] | None, allowed_hosts: tuple[str, ...]) -> str | None:
    """Why this page must not run where it is, or None. ``ancestors``: the origins of the pages that
    frame it, nearest first ([] when it is the top page; None when the browser cannot tell, which
    counts as a stranger). Every ancestor must be the app's own origin or an allowed host: a page that
    frames an allowed host cannot borrow its permission (clickjacking through a host)."""
    if ancestors == []:
        return None
    allowed = {own_origin, *allowed_hosts}
    strangers = [a for a in (ancestors or ["an unknown page"]) if a not in allowed]
    if not strangers:
        return None
    return (f"This chat cannot run inside {strangers[0]}: that site is not allowed to embed it. "
            "Open it in its own tab instead. (Its deployer lists the sites allowed to embed it in "
            "static/chat-config.json, embed.allowed_hosts.)")


def conversation_scope(host: str | None) -> str:
    """Where a chat keeps its conversations: the page's own, or one space per embedding host, so an
    embedded chat never reads or continues the user's other conversations."""
    return "" if not host else f"embed:{host}"


def check_option(name: str, value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise UsageError(f"embed option {name} must be one of {', '.join(allowed)}; got {value!r}")
    return value
