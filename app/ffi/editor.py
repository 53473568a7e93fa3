"""The Python panel's editor and files (``static/bridge/editor.js``, imported when the panel opens).

    editor = await attach_editor(node("py-editor"), node("py-highlight-code"))
    editor.set_text("print('hi')")         # an example, a saved script, an import
    save_text("script.py", source)         # a download of the text
    chosen = await read_chosen(node("py-import"), 200_000)   # {"name", "text"} or None
"""

from __future__ import annotations

import json
from typing import Any, Protocol, runtime_checkable

from app.ffi import _core
from app.ffi.dom import Node

__all__ = ["Editor", "EditorBridge", "attach_editor", "clear_fragment", "link_with", "page_fragment",
           "read_chosen", "save_text"]

EDITOR_MODULE_URL = "static/bridge/editor.js"


@runtime_checkable
class EditorBridge(Protocol):
    """What app/ui/playground.py uses of the page for its editor and files."""

    async def attach_editor(self, textarea: Node, code: Node) -> Editor: ...
    async def save_text(self, name: str, text: str, type: str = "text/x-python") -> None: ...
    async def read_chosen(self, file_input: Node, max_bytes: int) -> dict[str, str] | None: ...
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


async def _module() -> Any:
    if not _core.IN_BROWSER:
        raise _core.browser_only("the Python panel's editor")
    return await _core.import_module(EDITOR_MODULE_URL)


async def attach_editor(textarea: Node, code: Node) -> Editor:
    module = await _module()
    return Editor(module, textarea, code, module.attach(textarea._js, code._js))


async def save_text(name: str, text: str, type: str = "text/x-python") -> None:
    """Offer ``text`` as a file download named ``name``."""
    (await _module()).saveText(name, text, type)


async def read_chosen(file_input: Node, max_bytes: int) -> dict[str, str] | None:
    """``{"name", "text"}`` of the file picked in ``<input type=file>`` (None: none picked). Raises
    :class:`~app.errors.InvalidRequest` for a file over ``max_bytes``."""
    from app.errors import InvalidRequest

    try:
        raw = await (await _module()).readChosen(file_input._js, max_bytes)
    except _core.JsException as exc:
        raise InvalidRequest(str(getattr(getattr(exc, "js_error", None), "message", "") or exc),
                             param="file") from None
    return None if _core.is_null(raw) or raw is None else json.loads(raw)


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
