"""The Python panel's editor (``static/bridge/editor.js``, imported when the panel opens) and the page
URL's fragment (how a shared script arrives).

    editor = await attach_editor(node("py-editor"), node("py-highlight"))
    editor.set_text("print('hi')")         # an example, a saved script, an import
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from app.ffi import _core
from app.ffi.dom import Node

__all__ = ["Editor", "EditorBridge", "attach_editor", "clear_fragment", "link_with", "page_fragment"]

EDITOR_MODULE_URL = "static/bridge/editor.js"


@runtime_checkable
class EditorBridge(Protocol):
    """What app/ui/playground.py uses of the page for its editor and links."""

    async def attach_editor(self, textarea: Node, code: Node) -> Editor: ...
    def page_fragment(self) -> str: ...
    def clear_fragment(self) -> None: ...
    def link_with(self, fragment: str) -> str: ...


class Editor:
    """A textarea kept highlighted as Python; ``close()`` removes its listeners."""

    def __init__(self, module: Any, textarea: Node, code: Node, detach: Any) -> None:
        self._module, self._textarea, self._code, self._detach = module, textarea, code, detach

    def set_text(self, text: str) -> None:
        self._module.setText(self._textarea._js, self._code._js, text)

    def text(self) -> str:
        return str(self._textarea._js.value)

    def close(self) -> None:
        if self._detach is not None:
            self._detach()
            self._detach = None


async def attach_editor(textarea: Node, code: Node) -> Editor:
    if not _core.IN_BROWSER:
        raise _core.browser_only("the Python panel's editor")
    module = await _core.import_module(EDITOR_MODULE_URL)
    return Editor(module, textarea, code, module.attach(textarea._js, code._js))


def page_fragment() -> str:
    """The page URL's fragment, without ``#``."""
    if not _core.IN_BROWSER:
        raise _core.browser_only("the page URL")
    return str(_core.js.location.hash).removeprefix("#")


def clear_fragment() -> None:
    """Remove the fragment from the address bar (history entry replaced, no reload)."""
    if not _core.IN_BROWSER:
        raise _core.browser_only("the page URL")
    loc = _core.js.location
    _core.js.history.replaceState(None, "", str(loc.pathname) + str(loc.search))


def link_with(fragment: str) -> str:
    """This page's URL with ``#fragment``."""
    if not _core.IN_BROWSER:
        raise _core.browser_only("the page URL")
    loc = _core.js.location
    return f"{loc.origin}{loc.pathname}{loc.search}#{fragment}"
