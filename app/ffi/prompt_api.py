"""Chrome's built-in model: the Prompt API (``LanguageModel``, see app/backends/chrome_ai.py).

A session stays a JS object inside :class:`PromptSession`; prompts go in as plain data, answers come
back as strings. DOMException names become app.errors types here, once (app.errors.from_prompt_api).
The calls go through ``static/bridge/prompt-api.js``, which hands every failure to Python as a plain
Error keeping its name.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from app.ffi import _core
from app.ffi._reader import TextReader, TextStream

__all__ = ["PromptApiBridge", "PromptSession", "PromptStream", "prompt_api_availability", "prompt_api_create",
           "prompt_api_present"]

PROMPT_API_MODULE_URL = "static/bridge/prompt-api.js"


@runtime_checkable
class Session(Protocol):
    """One ``LanguageModel`` session as the backend sees it."""

    def usage(self) -> dict[str, float | None]: ...
    async def measure(self, prompt: Any, options: dict[str, Any] | None = None) -> float | None: ...
    async def prompt(self, prompt: Any, options: dict[str, Any] | None = None) -> str: ...
    def destroy(self) -> None: ...


@runtime_checkable
class PromptApiBridge(Protocol):
    """What app/backends/chrome_ai.py uses (tests/unit/backends/test_chrome_ai.py FakePromptApi)."""

    def prompt_api_present(self) -> bool: ...
    async def prompt_api_availability(self, options: dict[str, Any]) -> str: ...
    async def prompt_api_create(self, options: dict[str, Any],
                                on_progress: Callable[[float], None] | None = None) -> Session: ...
    def PromptStream(self, session: Any, prompt: Any, options: dict[str, Any] | None = None  # noqa: N802
                     ) -> TextStream: ...


def _prompt_api_error(exc: BaseException) -> Exception:
    from app.errors import from_prompt_api

    error = getattr(exc, "js_error", None) or exc
    return from_prompt_api(str(getattr(error, "name", "") or "Error"), str(getattr(error, "message", exc)))


async def _prompt_api(op: str, session: Any = None, arg: Any = None, options: dict[str, Any] | None = None,
                      controller: Any = None, progress: Any = None) -> Any:
    if not _core.IN_BROWSER:
        raise _core.browser_only("Chrome's built-in model")
    module = await _core.import_module(PROMPT_API_MODULE_URL)
    try:
        return await module.call(op, session, _core.to_js(arg), _core.to_js(options or {}),
                                 controller or _core.js.AbortController.new(), progress)
    except _core.JsException as exc:
        raise _prompt_api_error(exc) from None


def prompt_api_present() -> bool:
    """``'LanguageModel' in self``: does this browser have the Prompt API at all?"""
    if not _core.IN_BROWSER:
        raise _core.browser_only("Chrome's built-in model")
    return bool(_core.js.Reflect.has(_core.js.globalThis, "LanguageModel"))


async def prompt_api_availability(options: dict[str, Any]) -> str:
    """``LanguageModel.availability(options)``: unavailable, downloadable, downloading or available."""
    return str(await _prompt_api("availability", arg=options))


class PromptSession:
    """One ``LanguageModel`` session. Opaque outside this module; ``destroy()`` frees the model."""

    def __init__(self, session: Any, module: Any) -> None:
        self._session = session
        self._module = module  # static/bridge/prompt-api.js, already imported by the session's creation
        self.destroyed = False

    def usage(self) -> dict[str, float | None]:
        """``{"used": contextUsage, "window": contextWindow}`` (older Chrome: inputUsage/inputQuota);
        None for what this browser does not say (an infinite window included)."""
        return json.loads(self._module.usage(self._session))

    async def measure(self, prompt: Any, options: dict[str, Any] | None = None) -> float | None:
        """``measureContextUsage(prompt)``: tokens the prompt would take; None where it does not exist."""
        used = await _prompt_api("measure", self._session, prompt, options)
        return None if _core.is_null(used) else float(used)

    async def prompt(self, prompt: Any, options: dict[str, Any] | None = None) -> str:
        """``session.prompt(prompt, options)``: the whole answer. ``destroy()`` rejects it with Aborted."""
        return str(await _prompt_api("prompt", self._session, prompt, options))

    def destroy(self) -> None:
        if not self.destroyed:
            self.destroyed = True
            self._session.destroy()


async def prompt_api_create(options: dict[str, Any],
                            on_progress: Callable[[float], None] | None = None) -> PromptSession:
    """``LanguageModel.create(options)`` with a ``monitor`` reporting download progress (0..1) to
    ``on_progress``. Cancelling the awaiting task aborts the creation (and its download)."""
    if not _core.IN_BROWSER:
        raise _core.browser_only("Chrome's built-in model")
    controller = _core.js.AbortController.new()
    proxy = _core.create_proxy(lambda loaded: on_progress(float(loaded))) if on_progress is not None else None
    try:
        session = await _prompt_api("create", arg=options, controller=controller, progress=proxy)
        return PromptSession(session, await _core.import_module(PROMPT_API_MODULE_URL))
    except asyncio.CancelledError:
        controller.abort()
        raise
    finally:
        if proxy is not None:
            proxy.destroy()


class PromptStream(TextReader):
    """``session.promptStreaming(prompt, options)``: the answer's text pieces (deltas) as they come.
    ``cancel()`` aborts the prompt; the stream then fails with Aborted."""

    def __init__(self, session: PromptSession, prompt: Any, options: dict[str, Any] | None = None) -> None:
        if not _core.IN_BROWSER:
            raise _core.browser_only("Chrome's built-in model")
        self._controller = _core.js.AbortController.new()

        async def start() -> Any:
            return await _prompt_api("stream", session._session, prompt, options, self._controller)

        super().__init__(start, _prompt_api_error)

    def cancel(self) -> None:
        self._controller.abort()
