"""The Python side of ``static/bridge/reader.js``: a JS async iterable read in batches.

Shared by the engine's chunk stream, HTTP streams and the Prompt API's stream. JS drains the source
into a queue as items arrive; ``__anext__`` hands out what an earlier crossing brought, and when
that is used up takes everything queued since (one JSON array, one crossing). With nothing queued
it waits to be woken by JS (one Python callback per stream, called when the next item or the end
comes), so no item waits for a batch to fill.
"""

from __future__ import annotations

import asyncio
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


class _Now:
    """The loop a :class:`_WakeUp` schedules its done-callbacks on: those of a wake-up by JS run at once.

    Pyodide's loop turns every ``call_soon`` into a browser task (a MessageChannel message) whose
    callback re-enters Python: about 40 us here, more than everything else a streamed chunk costs in
    Python. A reader woken by JS (``wake()``) therefore resumes its waiting task right inside JS's
    call, when no task is running. Every other callback (a cancelled wait, say: asyncio's timeout
    finishes its own bookkeeping after ``cancel()`` returns) is scheduled the ordinary way.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._waking = False

    def wake(self, future: asyncio.Future[None]) -> None:
        """Resolve ``future`` (a :class:`_WakeUp` of this loop), running its waiter now if possible."""
        loop = self._loop
        self._waking = asyncio.current_task(loop) is None and not loop.is_closed()
        try:
            future.set_result(None)
        finally:
            self._waking = False

    def get_debug(self) -> bool:
        return False

    def call_soon(self, callback: Callable[..., Any], *args: Any, context: Any = None) -> None:
        loop = self._loop
        if not self._waking:
            loop.call_soon(callback, *args, context=context)
            return
        self._waking = False  # one callback: the waiting task's
        # What Pyodide's loop does before each callback: with stack switching each call from JS may
        # run on a thread state of its own, which must have the loop registered as running.
        if asyncio.events._get_running_loop() is not loop:
            asyncio.events._set_running_loop(loop)
        if context is None:
            callback(*args)
        else:
            context.run(callback, *args)

    def call_exception_handler(self, context: dict[str, Any]) -> None:
        self._loop.call_exception_handler(context)


class _WakeUp(asyncio.Future):
    """What a reader awaits until JS wakes it: a Future of the running loop whose done-callbacks
    (the waiting task's wake-up) run at once (:class:`_Now`)."""

    def __init__(self, now: _Now) -> None:
        super().__init__(loop=now)  # type: ignore[arg-type]

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self._loop._loop  # type: ignore[attr-defined]


class TextReader:
    """``__anext__`` returns the next item (one JSON value); JS errors -> app.errors via ``translate``.

    ``start`` returns the JS async iterable; it is called on the first ``__anext__`` (a subclass may
    open its own JS reader instead, see ``_open``).
    """

    def __init__(self, start: Callable[[], Any], translate: Callable[[BaseException], Exception]) -> None:
        self._start = start
        self._translate = translate
        self._reader: Any = None
        self._buffer: collections.deque[Any] = collections.deque()
        self._done = False
        self._waker: Any = None  # the proxy of self._woken that JS calls
        self._waiting: _WakeUp | None = None

    def __aiter__(self) -> TextReader:
        return self

    def buffered(self) -> int:
        """How many items can be had now without waiting."""
        return len(self._buffer)

    async def __anext__(self) -> Any:
        if self._buffer:
            return self._buffer.popleft()
        if self._done:
            raise StopAsyncIteration
        if self._reader is None:
            self._reader = await self._open()
            self._next = self._reader.next
            self._waker = _core.create_proxy(self._woken)
            self._now = _Now(asyncio.get_running_loop())
        while True:
            try:
                text = self._next(self._waker)
            except _core.JsException as exc:
                self._end()
                raise self._translate(exc) from None
            if text:
                self._buffer.extend(json.loads(text))
                return self._buffer.popleft()
            if text == "":  # the source has ended
                self._end()
                raise StopAsyncIteration
            self._waiting = waiting = _WakeUp(self._now)
            await waiting
            if self._done:  # closed meanwhile
                raise StopAsyncIteration

    async def _open(self) -> Any:
        """The JS reader over the source ``start`` returns."""
        module = await _core.import_module(READER_MODULE_URL)
        return module.reader(await self._start())

    def _woken(self) -> None:
        waiting = self._waiting
        if waiting is not None and not waiting.done():
            self._now.wake(waiting)

    def _end(self) -> None:
        self._done = True
        self._woken()
        if self._waker is not None:
            self._reader.forget()
            self._waker.destroy()
            self._waker = None

    async def aclose(self) -> None:
        """Drop what is left and wait until the source has ended."""
        self._buffer.clear()
        self._end()
        if self._reader is not None:
            await self._reader.finished()
