"""web-llm in a module Web Worker, on this page's WebGPU device.

    backend = WebLLMBackend()
    await backend.load("Llama-3.2-1B-Instruct-q4f32_1-MLC", on_progress=print)
    client = Client(backend)

One engine per backend. Requests are served one at a time in arrival order (an asyncio lock, which
is FIFO): a request made while another streams waits for it instead of interleaving with it. Loads
are single-flight: two loads of one model share one.

When the engine stops for good (its worker crashed or was terminated: EngineCrashed; the GPU device
was lost: DeviceLost; a stream that a stop could not end within ``stop_grace_s``), the request in
flight fails with that typed error, the worker is terminated and the model forgotten (``loaded`` is
None, ``lost`` says why), and the next ``load()`` starts a new worker.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from app.backends.base import Capabilities
from app.errors import (
    Aborted,
    DeviceLost,
    EngineCrashed,
    ModelNotFound,
    ModelNotLoaded,
    ShaderF16Unsupported,
    UsageError,
)
from app.ffi import engine
from app.ffi.engine import EngineBridge
from app.ir import ChatCompletion, ChatCompletionChunk, ChoiceDelta, ChunkChoice, content_chunk
from app.models.catalog import DEFAULT_CONTEXT, required_features
from app.models.layout import BACKENDS, StoreLayout, parse_version
from app.params import ChatRequest

MODULE_URL = "static/vendor/web-llm/index.js"
WORKER_URL = "static/webllm-worker.js"
# After a stop, web-llm ends a stream at its next decode step (well under a second). An engine that
# has not ended it this long after is stuck (a hung GPU, a stalled worker): it is restarted. A stop
# during a prefill longer than this restarts it too, which costs a reload from the cache.
STOP_GRACE_S = 5.0
# Failures after which the engine is gone: the worker must be restarted and the model loaded again.
ENGINE_GONE = (DeviceLost, EngineCrashed)


class WebLLMBackend:
    """Chat with models running in web-llm. See the module docstring.

    ``layout`` is the store layout of the vendored web-llm release; the appConfig's cache keys come
    from it. Without one, the layout of the release the module reports is used. ``cache_backend``
    is the store web-llm keeps model files in (``cache``, ``indexeddb``, ``opfs``).
    """

    name = "webllm"

    def __init__(self, *, app_config: dict[str, Any] | None = None, layout: StoreLayout | None = None,
                 cache_backend: str = "cache", module_url: str = MODULE_URL, worker_url: str = WORKER_URL,
                 engine_api: EngineBridge = engine, stop_grace_s: float = STOP_GRACE_S) -> None:
        # Checked now, before any worker starts.
        if layout is not None:
            layout.check_backend(cache_backend)
        elif cache_backend not in BACKENDS:
            raise UsageError(f"cache backend must be one of {', '.join(BACKENDS)}, got {cache_backend!r}")
        self.layout = layout
        self._app_config = app_config
        self._cache_backend = cache_backend
        self._module_url = module_url
        self._worker_url = worker_url
        self._api = engine_api
        self.stop_grace_s = stop_grace_s
        self._engine: Any = None
        self._starting: asyncio.Task | None = None
        self._loads: dict[str, asyncio.Task] = {}
        self._turn = asyncio.Lock()  # FIFO: one request at a time, in arrival order
        self.version: tuple[int, int, int] | None = None
        self.models: dict[str, dict[str, Any]] = {}  # model_id -> model record
        self._loaded: str | None = None
        self._embedding: str | None = None  # the embedding model loaded beside the chat model
        self.lost: str | None = None  # why the model was lost ("the worker crashed", ...), until it loads again
        # Why the model the app wanted did not load (said by the app: "X could not load: ..."), until one loads.
        self.load_failure: str | None = None
        self.gpu: Any = None  # app.runtime.WebGPUReport, probed on first load
        self.function_calling_ids: frozenset[str] = frozenset()
        self._progress_listeners: list[Callable[[dict[str, Any]], None]] = []

    # ------------------------------------------------------------------ engine lifecycle

    @property
    def loaded(self) -> str | None:
        """The model loaded in a live engine. A worker found dead here is let go of (see ``lost``)."""
        if self._engine is not None and self._loaded is not None:
            failure = self._api.engine_failure(self._engine)
            if failure:
                self._lost(EngineCrashed(failure))
        return self._loaded

    @loaded.setter
    def loaded(self, model_id: str | None) -> None:
        self._loaded = model_id

    async def _ensure_engine(self) -> Any:
        if self._engine is not None:
            failure = self._api.engine_failure(self._engine)
            if not failure:
                return self._engine
            self._lost(EngineCrashed(failure))  # died with no model loaded: start a new one now
        if self._starting is None:
            self._starting = asyncio.ensure_future(self._start_engine())
        starting = self._starting
        try:
            return await asyncio.shield(starting)
        except BaseException:
            # Forget a start that failed; a waiter that was merely cancelled leaves it running.
            if starting.done() and not starting.cancelled() and starting.exception() is not None:
                self._starting = None
            raise

    async def _start_engine(self) -> Any:
        exports = await self._api.webllm_exports(self._module_url)
        self.version = parse_version(exports["version"])
        if self.layout is None:
            self.layout = StoreLayout.for_version(self.version)
        elif self.layout.version != self.version:
            raise UsageError(f"the store layout is web-llm {self.layout.release}'s, but the vendored web-llm "
                             f"is {exports['version']}: build the layout from static/vendor/VERSIONS.json")
        config = self.layout.app_config_with(self._app_config or exports["prebuiltAppConfig"],
                                             self._cache_backend)
        self.models = {m["model_id"]: m for m in config.get("model_list", [])}
        self.function_calling_ids = frozenset(exports.get("functionCallingModelIds") or ())
        self._engine = await self._api.create_engine(self._module_url, self._worker_url, config,
                                                     self._on_progress)
        return self._engine

    def _on_progress(self, report: dict[str, Any]) -> None:
        for listener in list(self._progress_listeners):
            listener(report)

    async def load(self, model_id: str, *, on_progress: Callable[[dict[str, Any]], None] | None = None) -> None:
        """Load ``model_id`` (downloading its files if needed). Two loads of one model share one."""
        if not isinstance(model_id, str) or not model_id:
            raise UsageError("model_id must be a non-empty string")
        if self.loaded == model_id:
            return
        await self._once(model_id, self._load, on_progress)

    async def _once(self, model_id: str, load: Callable[[str], Any],
                    on_progress: Callable[[dict[str, Any]], None] | None) -> None:
        """Run ``load(model_id)`` once however many callers wait for it (each gets its progress).
        Shielded: a caller that gives up (a Stop, a cancelled file) does not leave the engine
        half-reloaded."""
        task = self._loads.get(model_id)
        if task is None:
            task = asyncio.ensure_future(load(model_id))
            self._loads[model_id] = task
            task.add_done_callback(lambda _t: self._loads.pop(model_id, None))
        if on_progress is not None:
            self._progress_listeners.append(on_progress)
        try:
            await asyncio.shield(task)
        finally:
            if on_progress is not None:
                self._progress_listeners.remove(on_progress)

    async def _load(self, model_id: str) -> None:
        engine = await self._ensure_engine()
        if self.models and model_id not in self.models:
            raise ModelNotFound(f"{model_id!r} is not in the model list ({len(self.models)} models known)")
        await self._check_gpu(self.models.get(model_id, {"model_id": model_id}))
        async with self._turn:
            engine = await self._ensure_engine()  # the one found before may have died meanwhile
            embedding = self._embedding
            self.loaded = None
            self._embedding = None
            # web-llm's reload unloads every model first: the embedding model is loaded again beside it.
            ids: str | list[str] = model_id if embedding is None else [model_id, embedding]
            try:
                await self._api.engine_reload(engine, ids)
            except ENGINE_GONE as exc:
                self._lost(exc, engine)
                raise
            self.loaded = model_id
            self._embedding = embedding
            self.lost = None
            self.load_failure = None

    # ------------------------------------------------------------------ embeddings

    @property
    def embedding_model(self) -> str | None:
        """The embedding model loaded beside the chat model (None: none)."""
        return self._embedding

    async def load_embedding(self, model_id: str, *,
                             on_progress: Callable[[dict[str, Any]], None] | None = None) -> None:
        """Load the embedding model ``model_id`` in the same engine, beside the chat model (web-llm's
        ``reload([chat, embedding])``: the chat model is loaded again from the cache). Fails before
        anything is fetched when the record is not an embedding model or this GPU cannot run it."""
        if not isinstance(model_id, str) or not model_id:
            raise UsageError("model_id must be a non-empty string")
        if self._embedding == model_id and self._engine is not None and not self._api.engine_failure(self._engine):
            return
        await self._ensure_engine()  # the model list is known from here
        record = self.models.get(model_id)
        if self.models and record is None:
            raise ModelNotFound(f"{model_id!r} is not in the model list ({len(self.models)} models known)")
        if record is not None and record.get("model_type") != 1:
            raise UsageError(f"{model_id!r} is not an embedding model (its record has no model_type 1)")
        await self._check_gpu(record or {"model_id": model_id})
        await self._once(model_id, self._load_embedding, on_progress)

    async def _load_embedding(self, model_id: str) -> None:
        async with self._turn:
            engine = await self._ensure_engine()
            chat = self.loaded
            self.loaded = None
            self._embedding = None
            try:
                await self._api.engine_reload(engine, model_id if chat is None else [chat, model_id])
            except ENGINE_GONE as exc:
                self._lost(exc, engine)
                raise
            self.loaded = chat
            self._embedding = model_id

    async def embed(self, texts: list[str]) -> list[list[float]]:
        """One vector per text from the loaded embedding model (``engine.embeddings.create``)."""
        if self._embedding is None or self._engine is None:
            raise ModelNotLoaded("no embedding model is loaded; call load_embedding(model_id) first")
        async with self._turn:
            engine = self._engine
            if self._embedding is None or engine is None:
                raise ModelNotLoaded("the embedding model is no longer loaded" + (f" ({self.lost})" if self.lost else ""))
            try:
                return await self._api.engine_embed(engine, {"input": list(texts), "model": self._embedding})
            except ENGINE_GONE as exc:
                self._lost(exc, engine)
                raise

    async def _check_gpu(self, record: dict[str, Any]) -> None:
        """Fail before downloading anything when this device cannot run the model."""
        from app.runtime import WebGPUReport

        if self.gpu is None:
            self.gpu = WebGPUReport.from_probe(await self._api.probe_webgpu())
        self.gpu.require()
        missing = required_features(record) - self.gpu.features
        if "shader-f16" in missing:
            raise ShaderF16Unsupported(
                f"{record['model_id']} has f16 weights and this GPU/browser has no shader-f16; "
                "pick the q4f32 build of the model")
        if missing:
            from app.errors import FeatureUnsupported

            raise FeatureUnsupported(f"{record['model_id']} needs {', '.join(sorted(missing))}, "
                                     "which this GPU/browser does not offer")

    async def set_app_config(self, app_config: dict[str, Any]) -> None:
        """Replace the model list (e.g. after a user model was added); a running engine gets it too."""
        self._app_config = app_config
        if self._engine is None:
            return
        config = self.layout.app_config_with(app_config, self._cache_backend)
        self.models = {m["model_id"]: m for m in config.get("model_list", [])}
        await self._api.engine_set_app_config(self._engine, config)

    async def health(self) -> None:
        """A cheap probe for the router: is there a WebGPU adapter? (WebGPUUnavailable if not.)"""
        from app.runtime import WebGPUReport

        self.gpu = WebGPUReport.from_probe(await self._api.probe_webgpu())
        self.gpu.require()

    async def unload(self) -> None:
        if self._engine is None:
            return
        async with self._turn:
            await self._api.engine_unload(self._engine)
            self.loaded = None
            self._embedding = None

    def close(self) -> None:
        """Terminate the worker (frees the GPU memory it held). A later load starts a new one."""
        if self._engine is not None:
            self._engine.close()
            self._engine = None
            self._starting = None
            self.loaded = None
            self._embedding = None

    # ------------------------------------------------------------------ requests

    def capabilities(self, model: str | None) -> Capabilities:
        model = model or self.loaded
        record = self.models.get(model or "", {})
        context = (record.get("overrides") or {}).get("context_window_size") or DEFAULT_CONTEXT
        native = model in self.function_calling_ids  # web-llm's own list, nothing guessed
        return Capabilities(tools="native" if native else "emulated", max_context=context,
                            vision=record.get("model_type") == 2, local=True)

    def _target(self, request: ChatRequest) -> ChatRequest:
        """The request aimed at the loaded model, or ModelNotLoaded before anything is sent."""
        if self.loaded is None or self._engine is None:
            if self.lost:
                raise ModelNotLoaded(f"the model was lost ({self.lost}); load it again")
            if self.load_failure:
                raise ModelNotLoaded(self.load_failure)
            raise ModelNotLoaded(f"no model is loaded; call load({request.model or 'model_id'!r}) first")
        if request.model is not None and request.model != self.loaded:
            raise ModelNotLoaded(f"{request.model!r} is not loaded (loaded: {self.loaded!r})")
        return request if request.model is not None else replace(request, model=self.loaded)

    async def complete(self, request: ChatRequest) -> ChatCompletion:
        request = _for_engine(self._target(request))
        async with self._turn:
            self._check_still_loaded(request)
            engine = self._engine
            try:
                raw = await self._api.engine_chat(engine, request.to_openai())
            except ENGINE_GONE as exc:
                self._lost(exc, engine)
                raise
        return ChatCompletion.from_dict(raw, backend=self.name)

    def _check_still_loaded(self, request: ChatRequest) -> None:
        """After waiting for the turn: the engine may have gone meanwhile (the request before crashed)."""
        if self.loaded is None or self._engine is None:
            raise ModelNotLoaded(f"{request.model!r} is no longer loaded"
                                 + (f" ({self.lost})" if self.lost else ""))

    def _lost(self, error: BaseException, engine: Any = None) -> None:
        """The engine is gone or unusable (worker crashed, GPU device lost, stuck): terminate the worker
        and forget the model, so the next load starts a new worker and loads it again. ``engine``: the
        one that failed, when known (a stale stream's failure must not stop a newer worker)."""
        if engine is not None and engine is not self._engine:
            return
        if isinstance(error, DeviceLost):
            self.lost = "GPU device lost"
        elif isinstance(error, EngineCrashed):
            self.lost = "worker crashed"
        else:
            self.lost = "engine stopped responding"
        self.close()

    def stream(self, request: ChatRequest) -> WebLLMStream:
        return WebLLMStream(self, _for_engine(self._target(request)))


def _for_engine(request: ChatRequest) -> ChatRequest:
    """Adapt a request to what web-llm accepts.

    - web-llm only takes text in assistant turns: a native tool-call turn goes back as the JSON the
      model wrote (a list of {name, arguments}), so the next step of a tool loop is accepted.
    - With ``tools`` web-llm forces the answer into a JSON list of calls, so the model could never
      answer in words: right after tool results, ``tools`` is left out (as emulation does).
    """
    if request.tools is not None and request.messages[-1]["role"] == "tool":
        request = replace(request, tools=None, tool_choice=None)
    if not any(m["role"] == "assistant" and m.get("content") is None for m in request.messages):
        return request
    messages = []
    for m in request.messages:
        if m["role"] == "assistant" and m.get("content") is None:
            calls = [{"name": c["function"]["name"], "arguments": json.loads(c["function"]["arguments"] or "{}")}
                     for c in m.get("tool_calls") or ()]
            m = {"role": "assistant", "content": json.dumps(calls)}
        messages.append(m)
    return replace(request, messages=tuple(messages))


class WebLLMStream:
    """One streaming completion. It holds the engine's turn from ``start()`` until it ends.

    ``stop()`` interrupts generation; the stream then ends with web-llm's final chunk
    (finish_reason "abort"). ``aclose()`` interrupts and releases at once; the next request on the
    engine works normally.
    """

    def __init__(self, backend: WebLLMBackend, request: ChatRequest) -> None:
        self._backend = backend
        self._request = request
        self._chunks: Any = None
        self._engine: Any = None  # the engine this stream runs on, from start()
        self._holding = False
        self._finished = False
        self._sent = False
        self._last: ChatCompletionChunk | None = None  # the last chunk that crossed whole
        self.stopped = False

    async def start(self) -> None:
        """Wait for the engine's turn and send the request."""
        if self._chunks is not None or self._finished:
            return
        await self._backend._turn.acquire()
        self._holding = True
        self._loop = asyncio.get_running_loop()
        try:
            self._backend._check_still_loaded(self._request)
        except ModelNotLoaded:
            await self._finish()
            raise
        self._engine = self._backend._engine
        self._chunks = self._backend._api.ChunkIterator(self._engine, self._request.to_openai())

    def __aiter__(self) -> WebLLMStream:
        return self

    async def __anext__(self) -> ChatCompletionChunk:
        if self._finished:
            raise StopAsyncIteration
        if self._chunks is None:
            await self.start()
        if self.stopped and not self._sent:
            # Stopped before anything was sent: web-llm clears its interrupt flag when a request
            # starts, so sending now would generate the whole answer. End here instead.
            await self._finish()
            return ChatCompletionChunk(id="", created=0, model=self._request.model or "",
                                       choices=(ChunkChoice(index=0, delta=ChoiceDelta(), finish_reason="abort"),))
        self._sent = True
        try:
            raw = await self._chunks.__anext__()
        except asyncio.CancelledError:
            # The caller gave up (Stop before the first token, a timeout): stop the engine too, or it
            # generates on to max_tokens; one that does not stop is restarted (see _give_up).
            await asyncio.shield(self._give_up())
            raise
        except BaseException as exc:
            if isinstance(exc, ENGINE_GONE):
                self._backend._lost(exc, self._engine)
            await self._finish()
            raise
        if raw.__class__ is str:  # like the chunk before, with this text (app/ffi/engine.py ChunkIterator)
            return content_chunk(self._last, raw)
        chunk = self._last = ChatCompletionChunk.from_dict(raw)
        return chunk

    def buffered(self) -> int:
        """How many chunks have arrived that ``__anext__`` can return without waiting."""
        return self._chunks.buffered() if self._chunks is not None and not self._finished else 0

    async def stop(self) -> None:
        """Ask the engine to stop generating; keep iterating to receive the final chunk."""
        if self._finished or self.stopped:
            return
        self.stopped = True
        if self._sent and self._engine is self._backend._engine:  # a restarted engine has nothing to stop
            await self._backend._api.engine_interrupt(self._engine)

    async def aclose(self) -> None:
        """Stop now and release the engine; safe to call at any time, more than once."""
        if self._finished:
            return
        try:
            await self.stop()
            if self._chunks is not None and self._sent:
                await self._chunks.aclose()
        except Aborted:
            pass
        except ENGINE_GONE as exc:  # nothing left to close
            self._backend._lost(exc, self._engine)
        finally:
            await self._finish()  # whatever happened, the engine's turn is released

    async def _give_up(self) -> None:
        """Like aclose(), but an engine that does not end the stream within the backend's
        ``stop_grace_s`` after the interrupt is stuck: it is restarted instead of waited for."""
        if self._finished:
            return
        try:
            await self.stop()
            if self._chunks is not None and self._sent:
                try:
                    await asyncio.wait_for(self._chunks.aclose(), self._backend.stop_grace_s)
                except TimeoutError:
                    self._backend._lost(TimeoutError(), self._engine)
        except Aborted:
            pass
        except ENGINE_GONE as exc:
            self._backend._lost(exc, self._engine)
        finally:
            await self._finish()

    def __del__(self) -> None:
        # Dropped mid-answer without aclose() (a `break` out of `async for` with no `async with`):
        # the engine's turn would stay taken and every later request would wait forever. Close it on
        # its loop instead (the task keeps this object alive until then).
        if self._holding and not self._finished and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._loop.create_task, self.aclose())

    async def _finish(self) -> None:
        self._finished = True
        if self._holding:
            self._holding = False
            self._backend._turn.release()
