"""web-llm's engine, in a module Web Worker (static/webllm-worker.js).

The page side is web-llm's own ``WebWorkerMLCEngine``, created here on first use; requests go in as
plain dicts (through ``to_js``) and responses come back as plain dicts. Every JS failure is
translated, once, into app.errors. ``static/bridge/engine.js`` creates the worker and watches it: when
it dies (an uncaught error, out of memory, ``terminate()``), whatever is in flight fails at once with
:class:`app.errors.EngineCrashed` and :func:`engine_failure` says why. No ``JsProxy`` leaves this module except inside
:class:`EngineHandle`, an opaque token consumers hand back to it.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol, runtime_checkable

from app.ffi import _core
from app.ffi._reader import READER_MODULE_URL, TextReader
from app.ffi.page import probe_webgpu

__all__ = ["EngineBridge", "EngineHandle", "ChunkIterator", "call_method", "create_engine", "engine_chat",
           "engine_embed", "engine_failure", "engine_interrupt", "engine_reload", "engine_set_app_config", "engine_unload", "probe_webgpu",
           "webllm_exports"]


@runtime_checkable
class Closable(Protocol):
    def close(self) -> None: ...


@runtime_checkable
class ChunkStream(Protocol):
    """A stream of web-llm chunks: plain dicts, or a str for a chunk like the one before but for its
    text (``delta.content``). ``buffered()``: how many have arrived and wait to be taken;
    ``aclose()`` waits until web-llm's stream ended."""

    def __aiter__(self) -> AsyncIterator[dict[str, Any] | str]: ...
    async def __anext__(self) -> dict[str, Any] | str: ...
    def buffered(self) -> int: ...
    async def aclose(self) -> None: ...


@runtime_checkable
class EngineBridge(Protocol):
    """What app/backends/webllm.py uses (tests/unit/fakes.py FakeEngineApi is its fake)."""

    async def webllm_exports(self, module_url: str,
                             versions_url: str = "static/vendor/VERSIONS.json") -> dict[str, Any]: ...
    async def probe_webgpu(self) -> dict[str, Any]: ...
    async def create_engine(self, module_url: str, worker_url: str, app_config: dict[str, Any],
                            on_progress: Callable[[dict[str, Any]], None] | None = None) -> Any: ...
    async def engine_reload(self, handle: Any, model_id: str | list[str],
                            chat_opts: dict[str, Any] | None = None) -> None: ...
    async def engine_unload(self, handle: Any) -> None: ...
    async def engine_set_app_config(self, handle: Any, app_config: dict[str, Any]) -> None: ...
    async def engine_interrupt(self, handle: Any) -> None: ...
    async def engine_chat(self, handle: Any, request: dict[str, Any]) -> dict[str, Any]: ...
    async def engine_embed(self, handle: Any, request: dict[str, Any]) -> list[list[float]]: ...
    def engine_failure(self, handle: Any) -> str | None: ...
    def ChunkIterator(self, handle: Any, request: dict[str, Any]) -> ChunkStream: ...  # noqa: N802


def _engine_error(exc: BaseException) -> Exception:
    """A JS rejection (an Error, or the worker's ``"<Name>: <message>"`` string) -> a typed error."""
    from app.errors import from_engine_message

    name = getattr(exc, "name", None)
    message = getattr(exc, "message", None)
    if isinstance(name, str) and isinstance(message, str) and name not in ("", "Error", "PythonError"):
        return from_engine_message(f"{name}: {message}", name=name)
    text = message if isinstance(message, str) and message else str(exc)
    return from_engine_message(text)


async def call_method(obj: Any, path: str, *args: Any) -> Any:
    """``await obj.a.b.method(*args)`` with args converted by ``to_js``; JS errors -> app.errors.

    The call runs inside JS (static/bridge/reader.js ``callMethod``), which turns a non-Error
    rejection into an Error: web-llm's worker engine rejects with plain strings, and in Pyodide 314
    awaiting a promise rejected with a non-Error never settles on the Python side.
    """
    if not _core.IN_BROWSER:
        raise _core.browser_only("call_method")
    module = await _core.import_module(READER_MODULE_URL)
    try:
        return await module.callMethod(obj, path, _core.to_js(list(args)))
    except _core.JsException as exc:
        raise _engine_error(exc) from None


ENGINE_MODULE_URL = "static/bridge/engine.js"


class EngineHandle:
    """The page side of one web-llm worker engine (static/bridge/engine.js's watched engine).
    Opaque outside this module."""

    def __init__(self, watched: Any, progress_proxy: Any) -> None:
        self._watched = watched
        self._progress = progress_proxy
        self.closed = False

    async def call(self, path: str, *args: Any) -> Any:
        """``await engine.<path>(*args)``; EngineCrashed at once if the worker dies meanwhile."""
        try:
            return await self._watched.call(path, _core.to_js(list(args)))
        except _core.JsException as exc:
            raise _engine_error(exc) from None

    def failure(self) -> str | None:
        """Why the worker is gone (crashed, terminated, out of memory), or None while it lives."""
        return str(self._watched.failure()) or None

    def close(self) -> None:
        """Stop the worker and free the progress callback proxy."""
        if self.closed:
            return
        self.closed = True
        self._watched.close()
        if self._progress is not None:
            self._progress.destroy()
            self._progress = None


async def webllm_exports(module_url: str, versions_url: str = "static/vendor/VERSIONS.json") -> dict[str, Any]:
    """Plain facts about the vendored web-llm: its npm version (``modelVersion`` is the model-library
    version, not the package's: 0.2.79 says v0_2_48), prebuilt catalog and function-calling ids."""
    module = await _core.import_module(module_url)
    config = getattr(module, "prebuiltAppConfig", None)
    versions = await _core.fetch_json(versions_url)
    return {
        "version": versions["@mlc-ai/web-llm"],
        "modelVersion": str(getattr(module, "modelVersion", "") or ""),
        "prebuiltAppConfig": _core.to_py(config) if config is not None else {"model_list": []},
        "functionCallingModelIds": list(getattr(module, "functionCallingModelIds", []) or []),
    }


async def create_engine(module_url: str, worker_url: str, app_config: dict[str, Any],
                        on_progress: Callable[[dict[str, Any]], None] | None = None) -> EngineHandle:
    """Start the worker and web-llm's page-side ``WebWorkerMLCEngine`` (no model loaded yet)."""
    module = await _core.import_module(module_url)
    bridge = await _core.import_module(ENGINE_MODULE_URL)
    proxy = None
    engine_config = _core.to_js({"appConfig": app_config})
    if on_progress is not None:
        proxy = _core.create_proxy(lambda report: on_progress(_core.to_py(report)))
        engine_config.initProgressCallback = proxy
    watched = bridge.createEngine(module, _core.absolute_url(worker_url), engine_config)
    return EngineHandle(watched, proxy)


async def engine_reload(handle: EngineHandle, model_id: str | list[str], chat_opts: dict[str, Any] | None = None) -> None:
    args = [model_id] if chat_opts is None else [model_id, chat_opts]
    await handle.call("reload", *args)


async def engine_unload(handle: EngineHandle) -> None:
    await handle.call("unload")


async def engine_set_app_config(handle: EngineHandle, app_config: dict[str, Any]) -> None:
    await handle.call("setAppConfig", app_config)


async def engine_interrupt(handle: EngineHandle) -> None:
    await handle.call("interruptGenerate")


async def engine_chat(handle: EngineHandle, request: dict[str, Any]) -> dict[str, Any]:
    """A non-streaming chat completion: plain dict in, plain dict out."""
    result = await handle.call("chat.completions.create", request)
    return _core.to_py(result)


async def engine_embed(handle: EngineHandle, request: dict[str, Any]) -> list[list[float]]:
    """``engine.embeddings.create(request)``: one vector (a list of floats) per input, in input order."""
    result = await handle.call("embeddings.create", request)
    data = sorted(_core.to_py(result)["data"], key=lambda item: item["index"])
    return [list(item["embedding"]) for item in data]


def engine_failure(handle: EngineHandle) -> str | None:
    """Why the engine's worker is gone, or None while it lives (nothing crosses to the worker)."""
    return handle.failure()


class ChunkIterator(TextReader):
    """Chunks of one web-llm streaming completion: a plain dict, or a str for a chunk that differs
    from the one before only in its text (``delta.content``; static/bridge/engine.js
    ``chunkEncoder``). The request is sent on the first ``__anext__``. ``aclose()`` waits for
    web-llm's stream to end (after ``interruptGenerate`` that is at once), so the engine is free after it."""

    def __init__(self, handle: EngineHandle, request: dict[str, Any]) -> None:
        super().__init__(lambda: None, _engine_error)
        self._handle = handle
        self._request = request

    async def _open(self) -> Any:
        try:
            # As JSON text: one string to cross, parsed by JS, instead of to_js building the
            # request's objects one key at a time (a tenth of a millisecond before the request leaves).
            return self._handle._watched.streamJson("chat.completions.create", json.dumps([self._request]))
        except _core.JsException as exc:
            raise _engine_error(exc) from None
