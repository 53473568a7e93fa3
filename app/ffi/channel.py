"""Messages between the app's tabs (same origin): a ``BroadcastChannel`` carrying JSON text.

    post, close = channel.open_channel("py-chat:conversations", on_message)
    post({"conv": {...}})      # reaches every other tab's on_message (never this one)
    close()                    # stops listening, frees the proxy

A message sent to a channel reaches the other tabs that opened one of the same name, not the
sender; where the browser has no BroadcastChannel, ``post`` does nothing (the other tabs then see
the change when they next start, from storage).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from app.ffi import _core

__all__ = ["ChannelBridge", "open_channel"]


@runtime_checkable
class ChannelBridge(Protocol):
    """What app/ui/page.py uses to keep tabs in step (tests/unit/fakes.py FakeChannels)."""

    def open_channel(self, name: str, handler: Callable[[Any], None]
                     ) -> tuple[Callable[[dict[str, Any]], None], Callable[[], None]]: ...


def open_channel(name: str, handler: Callable[[Any], None]
                 ) -> tuple[Callable[[dict[str, Any]], None], Callable[[], None]]:
    """Join the channel ``name``: ``handler(message)`` gets what other tabs post (parsed JSON; a
    message that is not JSON text is dropped). Returns ``(post, close)``."""
    if not _core.IN_BROWSER:
        raise _core.browser_only("BroadcastChannel")
    js = _core.js
    if _core.is_null(getattr(js, "BroadcastChannel", None)):
        return (lambda message: None), (lambda: None)

    def on_message(event: Any) -> None:
        data = event.data
        if not isinstance(data, str):
            return
        try:
            message = json.loads(data)
        except ValueError:
            return
        handler(message)

    channel = js.BroadcastChannel.new(name)
    proxy = _core.create_proxy(on_message)
    channel.addEventListener("message", proxy)
    done = [False]

    def post(message: dict[str, Any]) -> None:
        if not done[0]:
            channel.postMessage(json.dumps(message))

    def close() -> None:
        if not done[0]:
            done[0] = True
            channel.removeEventListener("message", proxy)
            channel.close()
            proxy.destroy()

    return post, close
