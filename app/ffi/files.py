"""Files the user saves or opens (``static/bridge/files.js``, imported on first use).

    await save_text("script.py", source, "text/x-python")     # offered as a download
    chosen = await read_chosen(node("py-import"), 200_000)   # {"name", "text"} or None
"""

from __future__ import annotations

import json
from typing import Any, Protocol, runtime_checkable

from app.ffi import _core
from app.ffi.dom import Node

__all__ = ["FilesBridge", "drop_held", "read_chosen", "read_held", "save_text", "take_chosen"]

FILES_MODULE_URL = "static/bridge/files.js"


@runtime_checkable
class FilesBridge(Protocol):
    """What the Python panel and the conversation list use to save and open files."""

    async def save_text(self, name: str, text: str, type: str = "text/plain") -> None: ...
    async def read_chosen(self, file_input: Node, max_bytes: int) -> dict[str, str] | None: ...
    async def take_chosen(self, file_input: Node) -> list[dict[str, Any]]: ...
    async def read_held(self, held_id: str) -> bytes: ...
    async def drop_held(self, held_id: str) -> None: ...


async def _module() -> Any:
    if not _core.IN_BROWSER:
        raise _core.browser_only("saving and opening files")
    return await _core.import_module(FILES_MODULE_URL)


async def save_text(name: str, text: str, type: str = "text/plain") -> None:
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


async def take_chosen(file_input: Node) -> list[dict[str, Any]]:
    """``[{"id", "name", "size"}]`` of the files picked in ``<input type=file multiple>``, held in the
    page (not read yet) until :func:`read_held` or :func:`drop_held`; the input is cleared."""
    return json.loads((await _module()).takeChosen(file_input._js))


async def read_held(held_id: str) -> bytes:
    """The bytes of a file :func:`take_chosen` held (then let go of)."""
    try:
        data = await (await _module()).readHeld(held_id)
    except _core.JsException as exc:
        from app.errors import UsageError

        raise UsageError(str(getattr(getattr(exc, "js_error", None), "message", "") or exc)) from None
    return data.to_bytes()


async def drop_held(held_id: str) -> None:
    (await _module()).dropHeld(held_id)
