"""Images the user attaches (``static/bridge/images.js``, imported on first use): checked, decoded and
resized in the page, handed to Python as plain data.

    images = await read_chosen_images(node("attach-file"))         # [{"name", "type", "width", "height", "url"}]
    remove = await watch_images(node("composer"), on_images)       # paste and drop onto the composer
    image = await prepare_image_url("data:image/png;base64,...", "cat.png")

Each result is ``{"name", "type", "width", "height", "url"}`` (``url`` a ``data:image/png`` or
``data:image/jpeg`` URL, at most ``max_side`` pixels on its longer side) or ``{"name", "error"}``
saying why that file cannot be attached (its type, its size before decoding, a file that does not
decode); the others still come.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from app.ffi import _core
from app.ffi.dom import Node

__all__ = ["MAX_FILE_BYTES", "MAX_SIDE", "ImagesBridge", "prepare_image_url", "read_chosen_images", "watch_images"]

IMAGES_MODULE_URL = "static/bridge/images.js"
MAX_SIDE = 1344  # pixels on the longer side: what Phi-3.5-vision takes (larger ones it shrinks itself)
MAX_FILE_BYTES = 20 * 1024 * 1024  # a file larger than this is refused before it is decoded


@runtime_checkable
class ImagesBridge(Protocol):
    """What the chat view uses to turn picked, pasted or dropped files into attachable images."""

    async def read_chosen_images(self, file_input: Node, max_side: int = MAX_SIDE,
                                 max_bytes: int = MAX_FILE_BYTES) -> list[dict[str, Any]]: ...
    async def watch_images(self, target: Node, handler: Callable[[list[dict[str, Any]]], None],
                           max_side: int = MAX_SIDE, max_bytes: int = MAX_FILE_BYTES) -> Callable[[], None]: ...
    async def prepare_image_url(self, url: str, name: str = "image", max_side: int = MAX_SIDE,
                                max_bytes: int = MAX_FILE_BYTES) -> dict[str, Any]: ...


async def _module() -> Any:
    if not _core.IN_BROWSER:
        raise _core.browser_only("attaching images")
    return await _core.import_module(IMAGES_MODULE_URL)


async def read_chosen_images(file_input: Node, max_side: int = MAX_SIDE,
                             max_bytes: int = MAX_FILE_BYTES) -> list[dict[str, Any]]:
    """The images picked in ``<input type=file>`` (the input is cleared for the next pick)."""
    return json.loads(await (await _module()).readChosenImages(file_input._js, max_side, max_bytes))


async def watch_images(target: Node, handler: Callable[[list[dict[str, Any]]], None],
                       max_side: int = MAX_SIDE, max_bytes: int = MAX_FILE_BYTES) -> Callable[[], None]:
    """Call ``handler(images)`` when files are pasted or dropped onto ``target``; returns the remover
    (which also destroys the proxy)."""
    module = await _module()
    proxy = _core.create_proxy(lambda text: handler(json.loads(text)))
    remove_js = module.watchImages(target._js, max_side, max_bytes, proxy)
    done = [False]

    def remove() -> None:
        if not done[0]:
            done[0] = True
            remove_js()
            proxy.destroy()

    return remove


async def prepare_image_url(url: str, name: str = "image", max_side: int = MAX_SIDE,
                            max_bytes: int = MAX_FILE_BYTES) -> dict[str, Any]:
    """A ``data:`` URL checked and resized like an attached file (e.g. bytes a script read)."""
    return json.loads(await (await _module()).prepareImageUrl(url, name, max_side, max_bytes))
