"""Which of the page's sheets is open (plain Python; the DOM side is :mod:`app.ui.sheets_view`).

    sheets = Sheets()
    sheets.when_first_opened("models", mount_picker)   # a panel that costs something mounts on demand
    sheets.show("models")           # mount_picker() runs (once); any other sheet closes
    sheets.toggle("models")         # closes it again
    sheets.show("nope")             # UsageError: no such sheet, nothing changes

One sheet at a time: the Models, Settings, Python, Device and Files panels, and on a narrow screen the
conversation list. The header's buttons open them; the layout (static/app.css) decides whether a sheet
sits beside the chat, over it, or fills the screen.
"""

from __future__ import annotations

from collections.abc import Callable

from app.errors import UsageError
from app.ui.store import Signal

# sheet name -> the id of its element on the page (index.html); its header button is "open-<name>".
SHEETS = {"conversations": "sidebar", "models": "models", "settings": "settings", "python": "python",
          "device": "device", "files": "files"}


class Sheets:
    """See the module docstring. ``current`` is the open sheet's name, None when none is."""

    def __init__(self) -> None:
        self.current: Signal[str | None] = Signal(None)
        self._seen: set[str] = set()
        self._first: dict[str, list[Callable[[], None]]] = {}

    @staticmethod
    def check(name: str) -> str:
        if name not in SHEETS:
            raise UsageError(f"no sheet named {name!r}; the sheets are {', '.join(SHEETS)}")
        return name

    def show(self, name: str) -> None:
        """Open ``name`` (closing any other); the first time, its :meth:`when_first_opened` hooks run."""
        self.check(name)
        self.current.set(name)
        if name not in self._seen:
            self._seen.add(name)
            for hook in self._first.pop(name, []):
                hook()

    def close(self) -> str | None:
        """Close the open sheet; its name (None: none was open)."""
        name = self.current.peek()
        self.current.set(None)
        return name

    def toggle(self, name: str) -> bool:
        """Open ``name``, or close it when it is the one open. True: it is open now."""
        if self.current.peek() == self.check(name):
            self.close()
            return False
        self.show(name)
        return True

    def when_first_opened(self, name: str, hook: Callable[[], None]) -> None:
        """Run ``hook()`` when ``name`` first opens (now, if it has been opened already)."""
        self.check(name)
        if name in self._seen:
            hook()
        else:
            self._first.setdefault(name, []).append(hook)
