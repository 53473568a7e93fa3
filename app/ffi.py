"""The one module that touches JavaScript.

Everything that converts values across the Pyodide bridge (``to_js``), wraps Python callables for JS
(``create_proxy``), destroys those proxies, or awaits a JS promise lives here. The rest of ``app/``
is plain Python: it calls these functions with plain data and gets plain data back, so it imports
and unit-tests under CPython. No ``JsProxy`` leaves this module except inside :class:`EngineHandle`,
an opaque token other modules hand back to it.

Under CPython the module imports fine and every browser-only function raises
:class:`~app.errors.BrowserOnly` with a sentence saying why.
"""

from __future__ import annotations

import collections
import json
import sys
from collections.abc import Callable
from typing import Any

IN_BROWSER = sys.platform == "emscripten"

if IN_BROWSER:  # pragma: no cover - exercised by the browser tests
    import js  # type: ignore[import-not-found]
    from pyodide.ffi import JsException as _JsException  # type: ignore[import-not-found]
    from pyodide.ffi import JsProxy, create_proxy, jsnull  # type: ignore[import-not-found]
    from pyodide.ffi import to_js as _to_js  # type: ignore[import-not-found]
else:
    js = None
    JsProxy = object
    jsnull = None

    class _JsException(Exception):  # never raised under CPython; keeps `except` clauses valid
        pass


def _browser_only(what: str) -> Exception:
    from app.errors import BrowserOnly  # imported here: start-up in the page never needs it

    return BrowserOnly(f"{what} needs the browser (Pyodide); this is CPython {sys.version.split()[0]}")


# --------------------------------------------------------------------------- conversion


def to_js(value: Any) -> Any:
    """Plain Python data -> a JS value (dicts become plain objects, not Maps).

    Request dicts must cross this way: a raw dict handed to an async JS call is a borrowed proxy
    that Pyodide destroys when the promise settles, while web-llm may still hold it.
    """
    if not IN_BROWSER:
        raise _browser_only("to_js")
    return _to_js(value, dict_converter=js.Object.fromEntries)


def to_py(value: Any) -> Any:
    """A JS value -> plain Python data, through JSON: Pyodide's ``to_py`` keeps JS null as ``jsnull``
    (not None), and plain data must compare and serialise like Python's own."""
    if IN_BROWSER and isinstance(value, JsProxy):
        return json.loads(js.JSON.stringify(value))
    return value



# --------------------------------------------------------------------------- environment


def versions() -> dict[str, str]:
    """Python and Pyodide versions of the running interpreter."""
    out = {"python": sys.version.split()[0]}
    if IN_BROWSER:
        import pyodide  # type: ignore[import-not-found]

        out["pyodide"] = pyodide.__version__
    return out


async def probe_webgpu() -> dict[str, Any]:
    """What ``navigator.gpu.requestAdapter()`` gives this page, as plain data.

    Shape: ``{"api": bool, "adapter": bool, "error": str | None, "info": {...}, "fallback": bool,
    "limits": {name: int}, "features": [str]}``. Interpretation lives in :mod:`app.runtime`.
    """
    if not IN_BROWSER:
        raise _browser_only("probe_webgpu")
    gpu = getattr(js.navigator, "gpu", None)
    if gpu is None or gpu is jsnull:
        return {"api": False, "adapter": False, "error": None}
    try:
        adapter = await gpu.requestAdapter(to_js({"powerPreference": "high-performance"}))
    except Exception as exc:  # a JS exception from requestAdapter itself
        return {"api": True, "adapter": False, "error": str(exc)}
    if adapter is None or adapter is jsnull:
        return {"api": True, "adapter": False, "error": None}
    info = getattr(adapter, "info", None)
    info_dict = {}
    if info is not None:
        for key in ("vendor", "architecture", "device", "description"):
            info_dict[key] = str(getattr(info, key, "") or "")
    fallback = bool(getattr(info, "isFallbackAdapter", False) or getattr(adapter, "isFallbackAdapter", False))
    # WebIDL attributes are enumerable getters on the prototype, not own properties.
    names = js.Object.keys(js.Object.getPrototypeOf(adapter.limits)).to_py()
    limits = {key: getattr(adapter.limits, key, None) for key in names}
    features = sorted(str(f) for f in adapter.features.values())
    return {"api": True, "adapter": True, "error": None, "info": info_dict, "fallback": fallback,
            "limits": {k: int(v) for k, v in limits.items() if isinstance(v, (int, float))},
            "features": features}


def is_online() -> bool:
    """``navigator.onLine``: False when the browser knows it has no network (then routing stays local)."""
    if not IN_BROWSER:
        raise _browser_only("is_online")
    return bool(js.navigator.onLine)



def watch_online(on_change: Callable[[bool], None]) -> Callable[[], None]:
    """Call ``on_change(online)`` on the window's ``online``/``offline`` events; returns ``stop()``,
    which removes the listeners and frees their proxies.

        stop = ffi.watch_online(router.connectivity_changed)
    """
    if not IN_BROWSER:
        raise _browser_only("watch_online")
    listeners = {"online": create_proxy(lambda event: on_change(True)),
                 "offline": create_proxy(lambda event: on_change(False))}
    for name, proxy in listeners.items():
        js.window.addEventListener(name, proxy)

    def stop() -> None:
        for name, proxy in listeners.items():
            js.window.removeEventListener(name, proxy)
            proxy.destroy()
        listeners.clear()

    return stop


# --------------------------------------------------------------------------- DOM (by element id)
#
# The page's markup is static HTML; Python only sets text, attributes and visibility, and builds
# rows from text. Nothing here parses HTML, so no model or user string can become markup.


def _el(element_id: str) -> Any:
    if not IN_BROWSER:
        raise _browser_only("the DOM")
    el = js.document.getElementById(element_id)
    if el is None or el is jsnull:  # Pyodide 314 gives jsnull for JS null
        raise LookupError(f"no element with id {element_id!r} on the page")
    return el


def set_text(element_id: str, text: str) -> None:
    _el(element_id).textContent = text


def set_attr(element_id: str, name: str, value: str) -> None:
    _el(element_id).setAttribute(name, value)


def set_hidden(element_id: str, hidden: bool) -> None:
    _el(element_id).hidden = hidden


def set_body_state(state: str) -> None:
    if not IN_BROWSER:
        raise _browser_only("the DOM")
    js.document.body.dataset.state = state


def set_rows(table_id: str, rows: list[tuple[str, str]]) -> None:
    """Replace the body of a two-column table with ``rows`` of plain text."""
    body = _el(table_id).tBodies[0]
    doc = js.document
    fragment = doc.createDocumentFragment()
    for label, value in rows:
        tr = doc.createElement("tr")
        th = doc.createElement("th")
        th.scope = "row"
        th.textContent = label
        td = doc.createElement("td")
        td.textContent = value
        tr.append(th, td)
        fragment.append(tr)
    body.replaceChildren(fragment)


# --------------------------------------------------------------------------- web-llm engine
#
# The engine lives in a module Web Worker (static/webllm-worker.js). The page side is web-llm's own
# WebWorkerMLCEngine, created here on first use; requests go in as plain dicts (through to_js) and
# responses come back as plain dicts. Every JS failure is translated, once, into app.errors.


def _engine_error(exc: BaseException) -> Exception:
    """A JS rejection (an Error, or the worker's ``"<Name>: <message>"`` string) -> a typed error."""
    from app.errors import from_engine_message

    name = getattr(exc, "name", None)
    message = getattr(exc, "message", None)
    if isinstance(name, str) and isinstance(message, str) and name not in ("", "Error", "PythonError"):
        return from_engine_message(f"{name}: {message}", name=name)
    text = message if isinstance(message, str) and message else str(exc)
    return from_engine_message(text)


# Calls a JS method inside JS and turns a non-Error rejection into an Error. web-llm's worker engine
# rejects with plain strings, and in Pyodide 314 awaiting a promise rejected with a non-Error never
# settles on the Python side; normalising before Python sees the promise avoids that hang.
_CALL_SOURCE = """
return (async () => {
  let self = obj;
  const names = path.split('.');
  const last = names.pop();
  for (const name of names) self = self[name];
  try { return await self[last](...args); }
  catch (e) { throw (e instanceof Error ? e : new Error(String(e))); }
})();
"""


async def call_method(obj: Any, path: str, *args: Any) -> Any:
    """``await obj.a.b.method(*args)`` with args converted by :func:`to_js`; JS errors -> app.errors."""
    if not IN_BROWSER:
        raise _browser_only("call_method")
    try:
        return await _js_function("call", "obj,path,args", _CALL_SOURCE)(obj, path, to_js(list(args)))
    except _JsException as exc:
        raise _engine_error(exc) from None


class EngineHandle:
    """The page side of one web-llm worker engine. Opaque outside this module."""

    def __init__(self, engine: Any, worker: Any, progress_proxy: Any) -> None:
        self._engine = engine
        self._worker = worker
        self._progress = progress_proxy
        self.closed = False

    def close(self) -> None:
        """Stop the worker and free the progress callback proxy."""
        if self.closed:
            return
        self.closed = True
        self._worker.terminate()
        if self._progress is not None:
            self._progress.destroy()
            self._progress = None


_modules: dict[str, Any] = {}


async def import_module(url: str) -> Any:
    """``import(url)`` of an ES module, resolved against the document (works under any sub-path)."""
    if not IN_BROWSER:
        raise _browser_only("import_module")
    absolute = str(js.URL.new(url, js.document.baseURI).href)
    if absolute not in _modules:
        _modules[absolute] = await _js_function("import", "u", "return import(u)")(absolute)
    return _modules[absolute]


async def fetch_json(url: str) -> Any:
    """GET ``url`` (relative to the document) and parse it as JSON."""
    if not IN_BROWSER:
        raise _browser_only("fetch_json")
    response = await js.fetch(js.URL.new(url, js.document.baseURI).href)
    if not response.ok:
        from app.errors import ModelFetchFailed

        raise ModelFetchFailed(f"GET {url} answered {response.status}")
    return json.loads(await response.text())


async def webllm_exports(module_url: str, versions_url: str = "static/vendor/VERSIONS.json") -> dict[str, Any]:
    """Plain facts about the vendored web-llm: its npm version (``modelVersion`` is the model-library
    version, not the package's: 0.2.79 says v0_2_48), prebuilt catalog and function-calling ids."""
    module = await import_module(module_url)
    config = getattr(module, "prebuiltAppConfig", None)
    versions = await fetch_json(versions_url)
    return {
        "version": versions["@mlc-ai/web-llm"],
        "modelVersion": str(getattr(module, "modelVersion", "") or ""),
        "prebuiltAppConfig": to_py(config) if config is not None else {"model_list": []},
        "functionCallingModelIds": list(getattr(module, "functionCallingModelIds", []) or []),
    }


async def create_engine(module_url: str, worker_url: str, app_config: dict[str, Any],
                        on_progress: Callable[[dict[str, Any]], None] | None = None) -> EngineHandle:
    """Start the worker and web-llm's page-side ``WebWorkerMLCEngine`` (no model loaded yet)."""
    module = await import_module(module_url)
    url = js.URL.new(worker_url, js.document.baseURI)
    worker = js.Worker.new(url, to_js({"type": "module"}))
    proxy = None
    config: dict[str, Any] = {"appConfig": app_config}
    engine_config = to_js(config)
    if on_progress is not None:
        proxy = create_proxy(lambda report: on_progress(to_py(report)))
        engine_config.initProgressCallback = proxy
    engine = module.WebWorkerMLCEngine.new(worker, engine_config)
    return EngineHandle(engine, worker, proxy)


async def engine_reload(handle: EngineHandle, model_id: str, chat_opts: dict[str, Any] | None = None) -> None:
    args = [model_id] if chat_opts is None else [model_id, chat_opts]
    await call_method(handle._engine, "reload", *args)


async def engine_unload(handle: EngineHandle) -> None:
    await call_method(handle._engine, "unload")


async def engine_set_app_config(handle: EngineHandle, app_config: dict[str, Any]) -> None:
    await call_method(handle._engine, "setAppConfig", app_config)


async def engine_interrupt(handle: EngineHandle) -> None:
    await call_method(handle._engine, "interruptGenerate")



async def engine_chat(handle: EngineHandle, request: dict[str, Any]) -> dict[str, Any]:
    """A non-streaming chat completion: plain dict in, plain dict out."""
    result = await call_method(handle._engine, "chat.completions.create", request)
    return to_py(result)


# A reader drains an async iterable of strings at JS speed into a queue; Python takes everything
# queued so far as one JSON array per bridge crossing. Awaiting a JS promise from Python costs a trip
# through Pyodide's event loop, so one crossing per chunk would make Python the bottleneck of fast
# streams. The first item wakes Python at once; later ones are gathered for up to 2 ms (well under a
# frame), so a fast stream costs one wake-up per batch, a slow one gets each item as it comes.
# Items cross as JSON: a web-llm chunk arrives in Python as a dict, an SSE data text as a str.
_READER_SOURCE = """
const state = {queue: [], done: false, error: null, wake: null, timer: null, first: true};
const wake = () => {
  state.timer = null;
  if (state.wake) { const w = state.wake; state.wake = null; w(); }
};
const soon = () => {
  if (state.first) { state.first = false; wake(); }
  else if (state.timer === null) state.timer = setTimeout(wake, 2);
};
const finished = (async () => {
  try { for await (const item of source) { state.queue.push(JSON.stringify(item)); soon(); } }
  catch (e) { state.error = e instanceof Error ? e : new Error(String(e)); }
  finally { state.done = true; if (state.timer !== null) clearTimeout(state.timer); wake(); }
})();
const flush = () => {
  if (state.queue.length) { const out = '[' + state.queue.join(',') + ']'; state.queue = []; return out; }
  if (state.error) throw state.error;
  return null;
};
return {
  // A wake-up can find the queue already taken (a timer set for items a previous take got): wait on.
  take: async () => {
    while (!state.queue.length && !state.done) await new Promise((resolve) => { state.wake = resolve; });
    return flush();
  },
  finished: () => finished,
};
"""
# An HTTP response as SSE `data:` texts (framing by the vendored eventsource-parser), or its whole
# body when it is not a stream. A non-2xx answer becomes an Error named HttpError with its status.
_HTTP_SOURCE = """
return (async function* () {
  const response = await fetch(url, Object.assign({}, init, {signal: controller.signal}));
  if (!response.ok) {
    const error = new Error(await response.text());
    error.name = 'HttpError';
    error.status = response.status;
    error.retryAfter = response.headers.get('retry-after');
    throw error;
  }
  if (!Parser) { yield await response.text(); return; }
  const events = response.body.pipeThrough(new TextDecoderStream()).pipeThrough(new Parser());
  for await (const event of events) {
    if (event.data === '[DONE]') return;
    if (event.event === 'error') {
      const error = new Error(event.data); error.name = 'HttpError'; error.status = 500; throw error;
    }
    yield event.data;
  }
})();
"""
_functions: dict[str, Any] = {}


def _js_function(name: str, params: str, source: str) -> Any:
    if name not in _functions:
        _functions[name] = js.Function.new(*params.split(","), source)
    return _functions[name]


class _TextReader:
    """Python side of a reader: ``__anext__`` returns the next item; JS errors -> app.errors."""

    def __init__(self, start: Callable[[], Any], translate: Callable[[BaseException], Exception]) -> None:
        self._start = start
        self._translate = translate
        self._reader: Any = None
        self._buffer: collections.deque[Any] = collections.deque()
        self._done = False

    def __aiter__(self) -> _TextReader:
        return self

    async def __anext__(self) -> Any:
        if self._buffer:
            return self._buffer.popleft()
        if self._done:
            raise StopAsyncIteration
        if self._reader is None:
            source = await self._start()
            self._reader = _js_function("reader", "source", _READER_SOURCE)(source)
        try:
            text = await self._reader.take()
        except _JsException as exc:
            self._done = True
            raise self._translate(exc) from None
        if text is None or text is jsnull:
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


class ChunkIterator(_TextReader):
    """Chunks of one web-llm streaming completion as plain dicts. ``aclose()`` waits for web-llm's
    stream to end (after ``interruptGenerate`` that is at once), so the engine is free after it."""

    def __init__(self, handle: EngineHandle, request: dict[str, Any]) -> None:
        async def start() -> Any:
            return await call_method(handle._engine, "chat.completions.create", request)

        super().__init__(start, _engine_error)


SSE_MODULE_URL = "static/vendor/eventsource-parser/stream.js"


class HttpStream(_TextReader):
    """One HTTP request through the browser's ``fetch``: the SSE ``data:`` texts of a streamed answer
    (``[DONE]`` ends it), or the whole body once when ``sse`` is False. ``cancel()`` aborts the fetch."""

    def __init__(self, url: str, *, method: str = "POST", headers: dict[str, str] | None = None,
                 body: str | None = None, sse: bool = True) -> None:
        if not IN_BROWSER:
            raise _browser_only("HttpStream")
        self._controller = js.AbortController.new()
        init: dict[str, Any] = {"method": method, "headers": headers or {}}
        if body is not None:
            init["body"] = body

        async def start() -> Any:
            parser = (await import_module(SSE_MODULE_URL)).EventSourceParserStream if sse else None
            make = _js_function("http", "Parser,url,init,controller", _HTTP_SOURCE)
            return make(parser, url, to_js(init), self._controller)

        super().__init__(start, _http_error)

    def cancel(self) -> None:
        self._controller.abort()


def _http_error(exc: BaseException) -> Exception:
    from app.errors import Aborted, BackendUnreachable, from_http_status

    error = getattr(exc, "js_error", None)
    name = str(getattr(error, "name", "") or getattr(exc, "name", ""))
    if name == "HttpError":
        retry = getattr(error, "retryAfter", None)
        return from_http_status(int(error.status), str(error.message),
                                retry_after=None if retry is None or retry is jsnull else str(retry))
    if name == "AbortError":
        return Aborted("the request was cancelled", original=str(exc))
    return BackendUnreachable(f"could not reach the endpoint: {getattr(exc, 'message', exc)}", original=str(exc))


# --------------------------------------------------------------------------- storage
#
# static/storage.js holds the IndexedDB and Cache API glue; values cross as JSON text.

STORAGE_MODULE_URL = "static/storage.js"


async def _storage() -> Any:
    if not IN_BROWSER:
        raise _browser_only("browser storage")
    return await import_module(STORAGE_MODULE_URL)


async def kv_get(store: str, key: str) -> Any:
    """The value under ``key`` in one of the app's IndexedDB stores, or None.

    Stores: ``models``, ``sizes``, ``usage``, ``conversations``, ``settings`` (``staging`` is the
    download manager's).
    """
    return json.loads(await _storage_call("kvGet", store, key))


async def kv_put(store: str, key: str, value: Any) -> None:
    """Store JSON-able ``value`` under ``key``; returns once the write has committed."""
    await _storage_call("kvPut", store, key, json.dumps(value))


async def kv_delete(store: str, key: str) -> None:
    await _storage_call("kvDelete", store, key)


async def kv_items(store: str) -> dict[str, Any]:
    """Every entry of a store as ``{key: value}``."""
    return json.loads(await _storage_call("kvItems", store))


async def store_list(store: dict[str, Any]) -> list[dict[str, Any]]:
    """Every entry of one of web-llm's stores (``store``: a spec from app.models.layout), as
    ``[{"key": str, "bytes": int}]``; an absent store is empty (and is not created)."""
    return json.loads(await _storage_call("listStore", json.dumps(store)))


async def store_delete(store: dict[str, Any], entries: list[dict[str, Any]]) -> None:
    await _storage_call("deleteEntries", json.dumps(store), json.dumps(entries))


async def store_put_text(store: dict[str, Any], entry: dict[str, Any], text: str) -> None:
    """Commit a small text file already in hand to web-llm's store."""
    await _storage_call("commitText", json.dumps(store), json.dumps(entry), text)


async def staging_list() -> dict[str, int]:
    """``{url: bytes}`` held for partially downloaded files."""
    return json.loads(await _storage_call("listStaging"))


async def staging_delete(urls: list[str]) -> None:
    await _storage_call("deleteStaging", json.dumps(urls))


async def head_size(url: str) -> int:
    """The Content-Length a HEAD request reports for ``url``, or -1 when the server does not say."""
    return int(await _storage_call("headSize", url))


async def fetch_text(url: str) -> str:
    return str(await _storage_call("fetchText", url))


async def storage_estimate() -> dict[str, Any]:
    """``navigator.storage.estimate()`` and ``persisted()``: ``{"usage", "quota", "persisted"}``."""
    return json.loads(await _storage_call("estimate"))


async def storage_persist() -> bool:
    """Ask for persistent storage (``navigator.storage.persist()``); True when granted."""
    return bool(await _storage_call("persist"))


async def _storage_call(name: str, *args: Any) -> Any:
    try:
        return await getattr(await _storage(), name)(*args)
    except _JsException as exc:
        raise _storage_error(exc) from None


def _storage_error(exc: BaseException) -> Exception:
    from app.errors import Aborted, AppError, ModelFetchFailed, QuotaExceeded

    error = getattr(exc, "js_error", None)
    name = str(getattr(error, "name", "") or getattr(exc, "name", ""))
    message = str(getattr(error, "message", "") or exc)
    if name == "AbortError":
        return Aborted(message)
    if name == "QuotaExceededError":
        return QuotaExceeded(f"the browser refused to store more: {message}", original=message)
    if name in ("NetworkError", "SizeMismatch"):
        return ModelFetchFailed(message)
    if name == "HttpError":
        return ModelFetchFailed(message, status=int(error.status))
    return AppError(f"browser storage failed: {name}: {message}")


class FileDownload:
    """One file streaming into web-llm's store (see ``startDownload`` in static/storage.js).

    ``on_progress(n, absolute)`` gets bytes as they arrive: ``absolute`` True means "this file now
    holds n bytes" (what was staged before a resume), False means "n more bytes". ``await wait()``
    returns the file's size once it is committed; ``cancel()`` stops it, keeping what arrived staged.
    """

    def __init__(self, spec: dict[str, Any], on_progress: Callable[[int, bool], None]) -> None:
        self._spec = spec
        self._on_progress = on_progress
        self._handle: Any = None
        self._proxy: Any = None
        self._cancelled = False

    async def wait(self) -> int:
        module = await _storage()
        self._proxy = create_proxy(lambda n, absolute: self._on_progress(int(n), bool(absolute)))
        try:
            self._handle = module.startDownload(json.dumps(self._spec), self._proxy)
            if self._cancelled:
                self._handle.cancel()
            return int(await self._handle.wait())
        except _JsException as exc:
            raise _storage_error(exc) from None
        finally:
            self._proxy.destroy()
            self._proxy = None

    def cancel(self) -> None:
        self._cancelled = True
        if self._handle is not None:
            self._handle.cancel()


# --------------------------------------------------------------------------- Chrome's built-in model
#
# The Prompt API (``LanguageModel``, see app/backends/chrome_ai.py). A session stays a JS object inside
# :class:`PromptSession`; prompts go in as plain data, answers come back as strings. DOMException
# names become app.errors types here, once (app.errors.from_prompt_api).

# One entry point for the awaited calls and the stream, so every failure reaches Python as a plain Error
# keeping its DOMException name: Pyodide 314 never settles a promise rejected with a non-Error, nor
# one rejected with a QuotaExceededError instance (the DOMException subclass the API uses for overflow).
_PROMPT_API_SOURCE = """
const plain = (e) => {
  const error = new Error(String(e && e.message !== undefined ? e.message : e));
  error.name = (e && e.name) || 'Error';
  return error;
};
return (async () => {
  try {
    switch (op) {
      case 'availability': return await LanguageModel.availability(arg);
      case 'create': {
        const options = Object.assign({}, arg, {signal: controller.signal});
        if (progress) options.monitor = (m) => m.addEventListener('downloadprogress', (e) => progress(e.loaded));
        return await LanguageModel.create(options);
      }
      case 'prompt': return await session.prompt(arg, Object.assign({}, options, {signal: controller.signal}));
      case 'stream': {
        const stream = session.promptStreaming(arg, Object.assign({}, options, {signal: controller.signal}));
        return (async function* () {
          try { for await (const piece of stream) yield piece; } catch (e) { throw plain(e); }
        })();
      }
      case 'measure': {
        const measure = session.measureContextUsage || session.measureInputUsage;  // the older name
        return measure ? await measure.call(session, arg, options) : null;
      }
    }
    throw new TypeError('unknown Prompt API operation ' + op);
  } catch (e) {
    throw plain(e);
  }
})();
"""
_PROMPT_API_PARAMS = "op,session,arg,options,controller,progress"


def _prompt_api_error(exc: BaseException) -> Exception:
    from app.errors import from_prompt_api

    error = getattr(exc, "js_error", None) or exc
    return from_prompt_api(str(getattr(error, "name", "") or "Error"), str(getattr(error, "message", exc)))


async def _prompt_api(op: str, session: Any = None, arg: Any = None, options: dict[str, Any] | None = None,
                      controller: Any = None, progress: Any = None) -> Any:
    if not IN_BROWSER:
        raise _browser_only("Chrome's built-in model")
    call = _js_function("prompt_api", _PROMPT_API_PARAMS, _PROMPT_API_SOURCE)
    try:
        return await call(op, session, to_js(arg), to_js(options or {}), controller or js.AbortController.new(),
                          progress)
    except _JsException as exc:
        raise _prompt_api_error(exc) from None


def prompt_api_present() -> bool:
    """``'LanguageModel' in self``: does this browser have the Prompt API at all?"""
    if not IN_BROWSER:
        raise _browser_only("Chrome's built-in model")
    return bool(_js_function("prompt_api_present", "", "return 'LanguageModel' in self")())


async def prompt_api_availability(options: dict[str, Any]) -> str:
    """``LanguageModel.availability(options)``: unavailable, downloadable, downloading or available."""
    return str(await _prompt_api("availability", arg=options))


class PromptSession:
    """One ``LanguageModel`` session. Opaque outside this module; ``destroy()`` frees the model."""

    def __init__(self, session: Any) -> None:
        self._session = session
        self.destroyed = False

    def usage(self) -> dict[str, float | None]:
        """``{"used": contextUsage, "window": contextWindow}`` (older Chrome: inputUsage/inputQuota);
        None for what this browser does not say (an infinite window included)."""
        text = _js_function("prompt_api_usage", "s", """
const used = s.contextUsage ?? s.inputUsage, window = s.contextWindow ?? s.inputQuota;
return JSON.stringify({used: Number.isFinite(used) ? used : null, window: Number.isFinite(window) ? window : null});
""")(self._session)
        return json.loads(text)

    async def measure(self, prompt: Any, options: dict[str, Any] | None = None) -> float | None:
        """``measureContextUsage(prompt)``: tokens the prompt would take; None where it does not exist."""
        used = await _prompt_api("measure", self._session, prompt, options)
        return None if used is None or used is jsnull else float(used)

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
    import asyncio

    if not IN_BROWSER:
        raise _browser_only("Chrome's built-in model")
    controller = js.AbortController.new()
    proxy = create_proxy(lambda loaded: on_progress(float(loaded))) if on_progress is not None else None
    try:
        return PromptSession(await _prompt_api("create", arg=options, controller=controller, progress=proxy))
    except asyncio.CancelledError:
        controller.abort()
        raise
    finally:
        if proxy is not None:
            proxy.destroy()


class PromptStream(_TextReader):
    """``session.promptStreaming(prompt, options)``: the answer's text pieces (deltas) as they come.
    ``cancel()`` aborts the prompt; the stream then fails with Aborted."""

    def __init__(self, session: PromptSession, prompt: Any, options: dict[str, Any] | None = None) -> None:
        if not IN_BROWSER:
            raise _browser_only("Chrome's built-in model")
        self._controller = js.AbortController.new()

        async def start() -> Any:
            return await _prompt_api("stream", session._session, prompt, options, self._controller)

        super().__init__(start, _prompt_api_error)

    def cancel(self) -> None:
        self._controller.abort()


# --------------------------------------------------------------------------- wheels on demand


async def load_packages(*names: str) -> None:
    """Load vendored wheels (pydantic, micropip) the first time a feature needs them.

    ``loadPackage`` does not reject when a package is missing, so success is checked by importing.

        await ffi.load_packages("pydantic")
    """
    import importlib
    import importlib.util

    missing = [n for n in names if importlib.util.find_spec(n) is None]
    if not missing:
        return
    if not IN_BROWSER:
        raise _browser_only(f"loading {', '.join(missing)}")
    import pyodide_js  # type: ignore[import-not-found]

    await pyodide_js.loadPackage(to_js(missing))
    importlib.invalidate_caches()
    for name in missing:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            from app.errors import AppError

            raise AppError(f"could not load the vendored package {name!r}: {exc}") from exc


# --------------------------------------------------------------------------- DOM nodes (handles)
#
# Views build their markup from text through these functions: elements and text nodes are created
# here and handed out as opaque ``Node`` handles. Nothing here parses HTML except
# ``render_markdown``, which sanitizes with DOMPurify (static/render.js) before anything is inserted.


class Node:
    """An element or text node of the page. Opaque outside this module."""

    __slots__ = ("_js",)

    def __init__(self, js_node: Any) -> None:
        self._js = js_node


def node(element_id: str) -> Node:
    """The element with ``element_id`` (LookupError when the page has none)."""
    return Node(_el(element_id))


def element(tag: str, text: str | None = None, *, attrs: dict[str, str] | None = None) -> Node:
    """A new element with optional text content and attributes (values are plain text)."""
    if not IN_BROWSER:
        raise _browser_only("the DOM")
    el = js.document.createElement(tag)
    for name, value in (attrs or {}).items():
        el.setAttribute(name, value)
    if text is not None:
        el.textContent = text
    return Node(el)


def text_node(text: str) -> Node:
    if not IN_BROWSER:
        raise _browser_only("the DOM")
    return Node(js.document.createTextNode(text))


def append(parent: Node, *children: Node) -> None:
    """Append (or move, for nodes already in the page) ``children`` at the end of ``parent``."""
    for child in children:
        parent._js.appendChild(child._js)


def insert_before(parent: Node, child: Node, before: Node | None) -> None:
    parent._js.insertBefore(child._js, None if before is None else before._js)


def replace_children(parent: Node, *children: Node) -> None:
    parent._js.replaceChildren(*(c._js for c in children))


def remove(target: Node) -> None:
    target._js.remove()


def set_node_text(target: Node, text: str) -> None:
    target._js.textContent = text


def append_node_text(target: Node, text: str) -> None:
    """Append to a text node: the one DOM change a streamed token makes."""
    target._js.appendData(text)


def set_node_attr(target: Node, name: str, value: str | None) -> None:
    """Set an attribute, or remove it when ``value`` is None."""
    if value is None:
        target._js.removeAttribute(name)
    else:
        target._js.setAttribute(name, value)


def set_prop(target: Node, name: str, value: Any) -> None:
    """A DOM property with a plain value (``value``, ``disabled``, ``hidden``, ``open``)."""
    setattr(target._js, name, value)


def get_prop(target: Node, name: str) -> Any:
    return to_py(getattr(target._js, name))


def focus(target: Node) -> None:
    target._js.focus()


def set_root_attr(name: str, value: str | None) -> None:
    """An attribute of <html> (e.g. ``data-theme``)."""
    if not IN_BROWSER:
        raise _browser_only("the DOM")
    set_node_attr(Node(js.document.documentElement), name, value)


def confirm(question: str) -> bool:
    if not IN_BROWSER:
        raise _browser_only("confirm")
    return bool(js.window.confirm(question))


def scroll_to_end(target: Node, *, only_if_near: int | None = None) -> None:
    """Scroll a container to its end (only when it was within ``only_if_near`` px of it)."""
    el = target._js
    if only_if_near is None or el.scrollHeight - el.scrollTop - el.clientHeight <= only_if_near:
        el.scrollTop = el.scrollHeight


# The facts a handler gets, as JSON: the key and modifiers, the nearest [data-action] and [data-id]
# around the target (one delegated listener serves a whole list), and the target's value.
_LISTEN_SOURCE = """
return (event) => {
  const t = event.target;
  const near = (sel) => (t && t.closest ? t.closest(sel) : null);
  const action = near('[data-action]');
  const owner = near('[data-id]');
  const facts = {type: event.type, key: event.key ?? null, shift: !!event.shiftKey, ctrl: !!event.ctrlKey,
    meta: !!event.metaKey, alt: !!event.altKey, composing: !!event.isComposing,
    action: action ? action.dataset.action : null, id: owner ? owner.dataset.id : null,
    value: t && typeof t.value === 'string' ? t.value : null};
  if (handler(JSON.stringify(facts)) === true) event.preventDefault();
};
"""


def listen(target: Node | str, event: str, handler: Callable[[dict[str, Any]], bool | None]) -> Callable[[], None]:
    """Call ``handler(facts)`` on each ``event``; it returns True to prevent the default action.

    Returns a remover that detaches the listener and destroys its proxy (put it in the view's Scope).
    ``target`` is a Node or ``"document"``.
    """
    if not IN_BROWSER:
        raise _browser_only("the DOM")
    el = js.document if target == "document" else target._js  # type: ignore[union-attr]
    proxy = create_proxy(lambda text: bool(handler(json.loads(text))))
    wrapper = _js_function("listen", "handler", _LISTEN_SOURCE)(proxy)
    el.addEventListener(event, wrapper)
    done = [False]

    def remove_listener() -> None:
        if not done[0]:
            done[0] = True
            el.removeEventListener(event, wrapper)
            proxy.destroy()

    return remove_listener


RENDER_MODULE_URL = "static/render.js"


async def render_markdown(target: Node, text: str) -> None:
    """Replace ``target``'s children with ``text`` rendered as markdown (marked), sanitized (DOMPurify:
    no scripts, handlers, javascript:/data: links, styles, remote media) and code highlighted."""
    if not IN_BROWSER:
        raise _browser_only("render_markdown")
    module = await import_module(RENDER_MODULE_URL)
    module.renderInto(target._js, text)


async def copy_text(text: str) -> None:
    """Put ``text`` on the clipboard."""
    if not IN_BROWSER:
        raise _browser_only("the clipboard")
    await js.navigator.clipboard.writeText(text)


# --------------------------------------------------------------------------- embedding (static/widget.js)


def page_query() -> dict[str, str]:
    """The page URL's query parameters (first value of each)."""
    if not IN_BROWSER:
        raise _browser_only("the page URL")
    return json.loads(_js_function("page_query", "", """
return () => JSON.stringify(Object.fromEntries(new URLSearchParams(location.search)));""")()())


def parent_origin_matches(origin: str) -> bool:
    """Whether this page is framed by a page of ``origin`` (``location.ancestorOrigins`` where the
    browser has it; elsewhere the referrer's origin)."""
    if not IN_BROWSER:
        raise _browser_only("the page URL")
    return bool(_js_function("parent_origin_matches", "", """
return (origin) => {
  if (window.parent === window) return false;
  const a = location.ancestorOrigins;
  if (a && a.length) return a[0] === origin;
  try { return new URL(document.referrer).origin === origin; } catch (e) { return false; }
};""")()(origin))


def host_channel(origin: str, tag: str, handler: Callable[[dict[str, Any]], None]) -> tuple[Callable[[dict[str, Any]], None], Callable[[], None]]:
    """Talk to the embedding page: ``handler(message)`` gets messages from ``window.parent`` whose
    ``event.origin`` is ``origin`` and whose ``source`` field is ``tag`` (everything else is
    ignored); returns ``(post, close)``: ``post(message)`` sends plain data to the parent, only to
    ``origin``; ``close()`` removes the listener and destroys its proxy."""
    if not IN_BROWSER:
        raise _browser_only("postMessage")
    proxy = create_proxy(lambda text: handler(json.loads(text)))
    wrapper = _js_function("host_channel", "origin, tag, handler", """
return (event) => {
  if (event.origin !== origin || event.source !== window.parent) return;
  const d = event.data;
  if (!d || typeof d !== 'object' || d.source !== tag) return;
  let text;
  try { text = JSON.stringify(d); } catch (e) { return; }
  handler(text);
};""")(origin, tag, proxy)
    js.window.addEventListener("message", wrapper)
    send = _js_function("host_post", "", "return (text, origin) => window.parent.postMessage(JSON.parse(text), origin);")()
    done = [False]

    def post(message: dict[str, Any]) -> None:
        if not done[0]:
            send(json.dumps(message), origin)

    def close() -> None:
        if not done[0]:
            done[0] = True
            js.window.removeEventListener("message", wrapper)
            proxy.destroy()

    return post, close


# --------------------------------------------------------------------------- offline (sw.js)


def register_service_worker(url: str, *, even_automated: bool = False) -> bool:
    """Register the app-shell service worker at ``url`` (relative to the document), only on http(s)
    and, unless ``even_automated``, not in a browser driven by automation (``navigator.webdriver``).
    Returns whether registration was started; its outcome is logged by the browser."""
    if not IN_BROWSER:
        raise _browser_only("service workers")
    return bool(_js_function("register_sw", "", """
return (url, evenAutomated) => {
  if (!/^https?:$/.test(location.protocol) || !('serviceWorker' in navigator)) return false;
  if (navigator.webdriver && !evenAutomated) return false;
  navigator.serviceWorker.register(new URL(url, document.baseURI).href)
    .catch((e) => console.warn('service worker not registered:', e.message));
  return true;
};""")()(url, even_automated))


def page_is_secure() -> bool:
    """Whether the page was served over https (then the browser blocks plain http to other hosts)."""
    if not IN_BROWSER:
        raise _browser_only("the page URL")
    return str(js.location.protocol) == "https:"
