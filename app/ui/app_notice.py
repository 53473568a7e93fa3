"""The banner above the app (#app-notice): what the page says about its own version and storage when
another tab or a deploy changes them.

- a new version of the app is installed and waiting (or another tab already took it): "A new version
  is ready" with "Reload to update", which lets the new service worker take over and reloads;
- this tab closed its storage because a newer version of the app opened it: reload (same button);
- this tab's storage waits for an older tab to close the database (no button: closing that tab ends it).

What each event means is :func:`notice_for` (plain data, tested under CPython); :class:`AppNotice`
only renders it and sends the one intent.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from app import ffi

UPDATE_READY = "A new version is ready."
STORAGE_SUPERSEDED = "This tab closed its storage because a newer version of the app opened; reload."
STORAGE_BLOCKED = ("Waiting for another tab of this app (an older version) to close its storage; close or "
                   "reload that tab.")


@dataclass(frozen=True)
class Notice:
    kind: str  # "update" | "superseded" | "blocked"
    text: str
    button: str | None  # the reload button's label, or None: no button
    rank: int  # a notice never replaces one of higher rank


NOTICES = {
    "waiting": Notice("update", UPDATE_READY, "Reload to update", 1),
    "activated": Notice("update", UPDATE_READY, "Reload to update", 1),
    "blocked": Notice("blocked", STORAGE_BLOCKED, None, 2),
    "superseded": Notice("superseded", STORAGE_SUPERSEDED, "Reload", 3),
}


def notice_for(current: Notice | None, event: str) -> Notice | None:
    """The notice shown after ``event`` (a service-worker state, or a storage event of
    ``ffi.watch_storage``) when ``current`` is shown. "opened" ends only the "blocked" notice."""
    if event == "opened":
        return None if current is not None and current.kind == "blocked" else current
    new = NOTICES.get(event)
    if new is None or (current is not None and current.rank > new.rank):
        return current
    return new


class AppNotice:
    """Renders :func:`notice_for` into #app-notice; its button calls ``reload`` (``ffi.apply_update``)."""

    def __init__(self, reload: Callable[[], None]) -> None:
        self.current: Notice | None = None
        self._reload = reload
        self._stop = ffi.listen(ffi.node("app-notice-reload"), "click", self._on_click)

    def show(self, event: str, _message: str = "") -> None:
        """A service-worker state or a storage event (``_message``: the JS side's own words)."""
        shown = notice_for(self.current, event)
        if shown == self.current:
            return
        self.current = shown
        if shown is None:
            ffi.set_hidden("app-notice", True)
            return
        ffi.set_attr("app-notice", "data-kind", shown.kind)
        ffi.set_text("app-notice-text", shown.text)
        ffi.set_text("app-notice-reload", shown.button or "")
        ffi.set_hidden("app-notice-reload", shown.button is None)
        ffi.set_hidden("app-notice", False)

    def _on_click(self, _facts: dict) -> bool:
        self._reload()
        return False

    def close(self) -> None:
        self._stop()
