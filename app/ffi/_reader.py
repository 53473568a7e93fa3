"""The Python side of ``static/bridge/reader.js``: a JS async iterable read in batches.

Shared by the engine's chunk stream, HTTP streams and the Prompt API's stream.
"""

from __future__ import annotations

import collections
import json
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol, runtime_checkable

from app.ffi import _core

READER_MODULE_URL = "static/bridge/reader.js"


@runtime_checkable
class TextStream(Protocol):
    """Texts as they come (HTTP SSE data, Prompt API pieces); ``cancel()`` aborts the source,
    ``aclose()`` drops the rest and waits for the end."""

    def __aiter__(self) -> AsyncIterator[str]: ...
    async def __anext__(self) -> str: ...
    async def aclose(self) -> None: ...
    def cancel(self) -> None: ...


class TextReader:
    """``__anext__`` returns the next item (one JSON value); JS errors -> app.errors via ``translate``."""

    def __init__(self, start: Callable[[], Any], translate: Callable[[BaseException], Exception]) -> None:
        self._start = start
        self._translate = translate
        self._reader: Any = None
        self._buffer: collections.deque[Any] = collections.deque()
        self._done = False

    def __aiter__(self) -> TextReader:
        return self

    async def __anext__(self) -> Any:
        if self._buffer:
            return self._buffer.popleft()
        if self._done:
            raise StopAsyncIteration
        if self._reader is None:
            module = await _core.import_module(READER_MODULE_URL)
            self._reader = module.reader(await self._start())
        try:
            text = await self._reader.take()
        except _core.JsException as exc:
            self._done = True
            raise self._translate(exc) from None
        if _core.is_null(text):
            self._done = True
            raise StopAsyncIteration
        self._buffer.extend(json.loads(text))
        return self._buffer.popleft()

    async def aclose(self) -> None:
        """Drop what is left and wait until the source has ended."""
        self._done = True
        self._buffer.clear()
        if self._reader is not None:
            await self._reader.finished()
