"""The app's one composition root: what answers, how requests are bounded, and the models.

    session = Session(PageConfig.from_dict(raw), webllm_version="0.2.86")
    session.gpu.set(report)                          # app.runtime.WebGPUReport, once probed
    client = await session.client()                  # the client the chat uses (chosen model loaded)
    reply = await client.chat.completions.create(messages=[{"role": "user", "content": "Hi"}])
    manager = await session.models()                 # the model manager (web-llm's catalog + yours)
    await session.use_model("Llama-3.2-1B-Instruct-q4f32_1-MLC")

Built from :class:`app.config.PageConfig` and the vendored web-llm version (``VERSIONS.json``), a
session owns every part the page uses and nothing else builds them:

- the backends: web-llm (when WebGPU is present and a model is chosen), Chrome's built-in model
  (when the browser has the Prompt API and the config allows it), an OpenAI-compatible endpoint
  (config file or Settings);
- the request path ``Client -> Telemetry -> Logging -> Router -> [Retry ->] Timeout -> backend``:
  one telemetry event stream (``gen_ai.*``, seen in ``session.activity``), one log line per request
  (errors redacted), and per route a timeout on the first token and between tokens (a hung endpoint
  or a stalled answer ends with a typed error) and, for endpoints, retries of what another try may
  cure; a web-llm worker that died (EngineCrashed, DeviceLost) is restarted and its model loaded
  again by the next request, ``status`` saying so;
- the model manager, whose store layout is the vendored web-llm release's;
- the chosen model, the endpoint and the chat settings, as signals the UI renders.

Route order under each policy (``app.router``): ``prefer-local`` tries web-llm with its model
loaded, then Chrome's built-in model, then the endpoint (a local model that would have to load
first goes after the endpoint); ``priority`` the same order, fixed; ``offline-only`` (and any
request while the browser is offline, or ``private=True``) the two on-device ones only; ``cost``
on-device first (free); ``latency`` whichever answers fastest as measured.

The UI only renders these signals and calls the intents (``use_model``, ``set_cloud``, ...).
Everything here is plain Python: the browser parts come in through :class:`Parts`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from app.config import CONFIG_URL, CloudConfig, PageConfig, Settings
from app.errors import AppError, NoBackendAvailable
from app.ui.store import Signal

VERSIONS_URL = "static/vendor/VERSIONS.json"
ACTIVITY_SIZE = 200  # telemetry events kept for the Activity view
Listener = Callable[[dict[str, Any]], None]


def _webllm(app_config: dict[str, Any] | None, layout: Any) -> Any:
    from app.backends.webllm import WebLLMBackend

    return WebLLMBackend(app_config=app_config, **({"layout": layout} if layout is not None else {}))


def _cloud(cloud: CloudConfig) -> Any:
    from app.backends.openai_compat import OpenAICompatBackend

    return OpenAICompatBackend(base_url=cloud.base_url, api_key=cloud.api_key or None, model=cloud.model,
                               name=cloud.label or None, context_window=cloud.context_window)


def _chrome() -> Any:
    from app.backends.chrome_ai import ChromeAIBackend

    return ChromeAIBackend()


def _prompt_api_present() -> bool:
    from app import ffi

    try:
        return ffi.prompt_api_present()
    except AppError:  # CPython: no browser, no built-in model
        return False


def _online() -> bool:
    from app import ffi

    try:
        return ffi.is_online()
    except AppError:
        return True


def _watch_online(on_change: Callable[[bool], None]) -> Callable[[], None] | None:
    from app import ffi

    try:
        return ffi.watch_online(on_change)
    except AppError:
        return None


async def _catalog(extra: list[dict[str, Any]]) -> Any:
    from app.models.catalog import Catalog

    return await Catalog.load(extra=extra)


def _manager(catalog: Any, backend: Any, layout: Any, emit: Listener) -> Any:
    from app.models.manager import ModelManager

    return ModelManager(catalog, backend, emit=emit, **({"layout": layout} if layout is not None else {}))


def _knowledge_kv() -> Any:
    from app.ui.conversations import KvStore

    return KvStore("knowledge")


async def _pdf_text(data: bytes) -> list[str]:
    from app.ffi.pdf import pdf_text

    return await pdf_text(data)


async def _vector_index() -> Any:
    from app.ffi.vectors import js_vector_index

    return await js_vector_index()


def _layout(version: str | None) -> Any:
    if version is None:
        return None
    from app.models.layout import StoreLayout

    return StoreLayout.for_version(version)


@dataclass
class Parts:
    """How each part is made. The defaults are the real ones; unit tests pass their own."""

    webllm: Callable[[dict[str, Any] | None, Any], Any] = _webllm
    cloud: Callable[[CloudConfig], Any] = _cloud
    chrome: Callable[[], Any] = _chrome
    prompt_api_present: Callable[[], bool] = _prompt_api_present
    online: Callable[[], bool] = _online
    watch_online: Callable[[Callable[[bool], None]], Any] = _watch_online
    catalog: Callable[[list[dict[str, Any]]], Any] = _catalog
    manager: Callable[[Any, Any, Any, Listener], Any] = _manager
    layout: Callable[[str | None], Any] = _layout
    knowledge_kv: Callable[[], Any] = _knowledge_kv  # where app.knowledge keeps files and vectors
    pdf_text: Callable[[bytes], Awaitable[list[str]]] | None = _pdf_text  # a PDF's text per page (pdf.js)
    vector_index: Callable[[], Awaitable[Any]] = _vector_index  # app.knowledge's index (JS in the page)
    log: Callable[[str], None] = print  # the Logging middleware's lines (the browser console)
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep  # how Retry waits between attempts


@dataclass
class _Built:
    key: tuple[Any, ...]
    client: Any
    router: Any
    stop_watching: Any = None


class Session:
    """The app. See the module docstring."""

    def __init__(self, config: PageConfig, *, webllm_version: str | None = None, parts: Parts | None = None,
                 kv: Any = None, settings: Settings | None = None) -> None:
        self.config = config
        self.webllm_version = webllm_version
        self.parts = parts or Parts()
        self._kv = kv  # where the chosen model, endpoint and settings are kept (None: not kept)
        self.settings: Signal[Settings] = Signal(settings or Settings())  # what every chat request is sent with
        self.gpu: Signal[Any] = Signal(None)  # app.runtime.WebGPUReport once probed
        self.benchmarks: Signal[dict[tuple[str, str], Any]] = Signal({})  # app.benchmark.BenchResult by (device, model)
        self._benchmarking = False
        self.model: Signal[str | None] = Signal(config.model)  # the web-llm model the chat uses
        self.cloud: Signal[CloudConfig | None] = Signal(config.cloud)
        self.status: Signal[str] = Signal("")  # "Loading model …: 40%" and the like
        self.builtin: Signal[str | None] = Signal(None)  # Chrome's model: its availability, None if absent
        self.activity: Signal[tuple[dict[str, Any], ...]] = Signal(())  # recent telemetry events
        self._listeners: list[Listener] = []
        self._layout: Any = None  # web-llm's store layout for the vendored release, made when first needed
        self._local: Any = None
        self._chrome: Any = None
        self._cloud_backend: tuple[CloudConfig, Any] | None = None
        self._built: _Built | None = None
        self._manager: Any = None
        self._manager_task: asyncio.Task | None = None
        self._knowledge: Any = None
        self.use_files: Signal[bool] = Signal(True)  # the chat answers from the Files sheet's files

    # ------------------------------------------------------------------ events

    def on_event(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(event)`` for every telemetry and model event; returns the remover."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def emit(self, event: dict[str, Any]) -> None:
        """One event (``gen_ai.*`` from the middleware, ``app.*`` from the models and routes)."""
        event = {"time": self.parts.clock(), **event}
        if _shown(event):
            self.activity.update(lambda events: (*events[-(ACTIVITY_SIZE - 1):], event))
        for listener in list(self._listeners):
            listener(event)

    # ------------------------------------------------------------------ backends

    def layout(self) -> Any:
        """What web-llm's store looks like in the vendored release (app.models.layout)."""
        if self._layout is None:
            self._layout = self.parts.layout(self.webllm_version)
        return self._layout

    def local_backend(self) -> Any:
        """The web-llm backend (created on first ask, its worker on first load)."""
        if self._local is None:
            self._local = self.parts.webllm(self.config.app_config, self.layout())
        return self._local

    def _local_wanted(self) -> bool:
        gpu = self.gpu.peek()
        return bool(gpu is not None and gpu.available and self.model.peek())

    def _chrome_backend(self) -> Any:
        if self._chrome is None and self.config.builtin and self.parts.prompt_api_present():
            self._chrome = self.parts.chrome()
        return self._chrome

    def _builtin_usable(self) -> bool:
        """Chrome's model is a route unless the browser said it has none here."""
        return self._chrome_backend() is not None and self.builtin.peek() != "unavailable"

    async def probe_builtin(self) -> str | None:
        """Ask the browser whether its built-in model can answer here (``builtin`` says it);
        nothing is created or downloaded."""
        chrome = self._chrome_backend()
        if chrome is None:
            return None
        try:
            state = await chrome.availability()
        except AppError:
            state = "unavailable"
        self.builtin.set(state)
        return state

    def _endpoint(self, cloud: CloudConfig) -> Any:
        if self._cloud_backend is None or self._cloud_backend[0] != cloud:
            self._cloud_backend = (cloud, self.parts.cloud(cloud))
        return self._cloud_backend[1]

    def _routes(self) -> list[Any]:
        from app.middleware import Retry, Timeout, build_stack
        from app.router import Route

        limits = self.config.limits
        bound = partial(Timeout, seconds=limits.request_s, first_token_seconds=limits.first_token_s,
                        idle_seconds=limits.idle_s)
        routes = []
        if self._local_wanted():
            local = partial(Timeout, seconds=limits.request_s, first_token_seconds=limits.local_first_token_s,
                            idle_seconds=limits.idle_s)
            routes.append(Route(build_stack(self.local_backend(), [local]), priority=0))
        if self._builtin_usable():
            routes.append(Route(build_stack(self._chrome_backend(), [bound]), priority=1))
        cloud = self.cloud.peek()
        if cloud is not None:
            retry = partial(Retry, attempts=limits.attempts, on_retry=self._on_retry, sleep=self.parts.sleep)
            routes.append(Route(build_stack(self._endpoint(cloud), [retry, bound]), priority=2))
        return routes

    def _on_retry(self, backend: str, attempt: int, error: Exception, delay: float) -> None:
        from app.middleware import redact

        self.emit({"event": "app.request.retry", "gen_ai.backend": backend, "attempt": attempt + 1,
                   "error.type": type(error).__name__, "error.message": redact(str(error)), "delay_s": delay})

    def _no_backend(self) -> NoBackendAvailable:
        gpu = self.gpu.peek()
        why = "this browser has no WebGPU" if gpu is not None and not gpu.available else "no model is chosen"
        return NoBackendAvailable(f"Cannot chat yet: {why}, no built-in model and no cloud endpoint is "
                                  "configured. Add an OpenAI-compatible endpoint under Settings.")

    def _build(self) -> _Built:
        from app.client import Client
        from app.middleware import Logging, Telemetry, build_stack
        from app.router import Router

        key = (self._local_wanted(), self.model.peek(), self.cloud.peek(), self._builtin_usable())
        if self._built is not None and self._built.key == key:
            return self._built
        routes = self._routes()
        if not routes:
            raise self._no_backend()
        router = Router(routes, policy=self.config.policy, online=self.parts.online)
        self._close_built()
        client = Client(build_stack(router, [partial(Telemetry, emit=self.emit), partial(Logging, log=self.parts.log)]))
        self._built = _Built(key, client, router, self.parts.watch_online(router.connectivity_changed))
        return self._built

    async def check_health(self) -> dict[str, str]:
        """Probe every route once (an endpoint's model list, WebGPU, the built-in model's availability);
        the results feed the circuit breakers and the Activity view. Not run on its own: a probe sent
        while an answer streams can cut it short (llama.cpp's server interrupts a running request when
        another arrives)."""
        router = self._build().router
        try:
            results = await router.check_health()
        except Exception as exc:  # a probe must never take the page down
            results = {"router": f"{type(exc).__name__}: {exc}"}
        if self._chrome is not None and self._chrome.state is not None:
            self.builtin.set(self._chrome.state)
        self.emit({"event": "app.health", "results": results})
        return results

    def _close_built(self) -> None:
        if self._built is not None:
            if self._built.stop_watching is not None:
                self._built.stop_watching()
            self._built = None

    @property
    def router(self) -> Any:
        """The current router (None until :meth:`client` has built one)."""
        return None if self._built is None else self._built.router

    async def client(self) -> Any:
        """The client the chat uses: built again when what answers changed; the chosen web-llm model
        is loaded first (when it cannot load and another route exists, that one answers)."""
        built = self._build()
        model = self.model.peek()
        if self._local_wanted() and self.local_backend().loaded != model:
            fallback = len(built.router.routes) > 1
            lost = getattr(self.local_backend(), "lost", None)
            try:
                await self.load_model(model, reason=f"The model stopped ({lost}); reloading" if lost else None)
            except AppError as exc:
                if not fallback:
                    raise
                # The router skips a web-llm backend without its model and another route answers;
                # if none can, the answer's error says why this model did not load.
                self.local_backend().load_failure = f"{model} could not load: {type(exc).__name__}: {exc}"
                self.status.set(f"{model} could not load ({type(exc).__name__}); another backend answers")
        return built.client

    def context_window(self) -> int | None:
        """The context window the chat's next request may use (the largest of the routes that may
        answer it), known without loading a model; None when nothing answers yet or no limit is known.
        Reads the chosen model and endpoint as signals, so a computed value using it follows them."""
        from app.params import ChatRequest

        model = self.model.get()
        self.cloud.get(), self.gpu.get()
        try:
            router = self._build().router
            routes, _skipped = router.plan(ChatRequest.build(messages=[{"role": "user", "content": "?"}]),
                                           check_context=False)
            # The web-llm route's window is the chosen model's, loaded or not; a route that does not say
            # (Chrome's built-in model before its first session) does not hide the others'.
            windows = [route.backend.capabilities(model if route.backend.name == "webllm" else None).max_context
                       for route, _why in routes]
        except Exception:  # noqa: BLE001 - nothing answers yet (NoBackendAvailable): the meter shows no window
            return None
        known = [w for w in windows if w]
        return max(known) if known else None

    def describe(self) -> str:
        """What answers, in words, for the page's notice."""
        cloud, model = self.cloud.peek(), self.model.peek()
        chrome = self._builtin_usable() and self.builtin.peek() is not None
        parts = []
        if self._local_wanted():
            parts.append(f"{model}, running on this device")
        if chrome:
            parts.append("Chrome's built-in model")
        if cloud:
            parts.append(f"{cloud.label} ({cloud.model})")
        if not parts:
            return ""
        if len(parts) == 1:
            return f"Answers come from {parts[0]}."
        return f"Answers come from {parts[0]}, or when it cannot, {' then '.join(parts[1:])}."

    # ------------------------------------------------------------------ intents

    def set_cloud(self, cloud: CloudConfig | None) -> None:
        """Use this endpoint (None: none); the next request goes through a router that has it."""
        self.cloud.set(cloud)

    async def save_settings(self, settings: Settings, cloud: CloudConfig | None) -> None:
        """The Settings form's intent: new chat settings and endpoint, in effect at once and kept
        (the endpoint without its key)."""
        self.settings.set(settings)
        self.set_cloud(cloud)
        await self._keep("chat", {"settings": settings.to_record(), "cloud": cloud.to_record() if cloud else None})

    async def _keep(self, key: str, value: Any) -> None:
        """Remember a choice for the next visit; a refused write (quota) is said, never fatal: the
        choice is in effect for this visit either way."""
        if self._kv is None:
            return
        try:
            await self._kv.put(key, value)
        except AppError as exc:
            self.emit({"event": "app.storage.refused", "what": key, "error": str(exc)})
            self.status.set(f"Your choice applies now but could not be kept for the next visit: {exc}")

    async def models(self) -> Any:
        """The model manager (built once: web-llm's catalog, the config's models and the user's)."""
        if self._manager is not None:
            return self._manager
        if self._manager_task is None or (self._manager_task.done() and self._manager_task.exception()):
            self._manager_task = asyncio.ensure_future(self._make_manager())
        self._manager = await asyncio.shield(self._manager_task)
        return self._manager

    async def _make_manager(self) -> Any:
        catalog = await self.parts.catalog(list((self.config.app_config or {}).get("model_list", [])))
        return self.parts.manager(catalog, self.local_backend(), self.layout(), self.emit)

    async def load_model(self, model_id: str, *, reason: str | None = None) -> None:
        """Load ``model_id`` into web-llm through the manager (its progress: ``app.model.load``
        events and ``status``, which starts with ``reason`` when given: "The model stopped (worker
        crashed); reloading")."""
        manager = await self.models()
        saying = f"{reason} {model_id}" if reason else f"Loading {model_id}"

        def progress(report: dict[str, Any]) -> None:
            share = report.get("progress")
            percent = f": {round(float(share) * 100)}%" if isinstance(share, (int, float)) else ""
            self.status.set(f"{saying}{percent}")

        self.status.set(f"{saying}…" if reason else saying)
        try:
            await manager.load(model_id, on_progress=progress)
        finally:
            self.status.set("")

    async def use_model(self, model_id: str) -> None:
        """Chat with ``model_id`` from now on: it becomes the chosen model and is loaded now."""
        manager = await self.models()
        info = manager.catalog.get(model_id)  # ModelNotFound before anything changes
        if getattr(info, "embedding", False):
            from app.errors import UsageError

            raise UsageError(f"{model_id} is an embedding model: it reads your files for Files answers "
                             "and cannot chat; pick a chat model")
        self.model.set(model_id)
        await self._keep("model", model_id)
        await self.load_model(model_id)

    async def image_support(self) -> dict[str, Any]:
        """Whether the chat's next message may carry images, and the on-device models that see them:
        ``{"sees": bool, "by": "<model or endpoint>" | None, "vision_models": [...]}``. The chosen web-llm
        model sees when its catalog record says model_type 2 (a VLM); an endpoint when its preset (or
        config) declares vision. Reads the catalog (loading web-llm's module the first time)."""
        from app.models.catalog import required_features

        manager = await self.models()
        gpu = self.gpu.peek()
        features = getattr(gpu, "features", frozenset())
        # Those this GPU can run first (a q*f16 model needs shader-f16): the first is the one offered.
        vlms = [m.id for m in sorted((m for m in manager.catalog.all() if m.record.get("model_type") == 2),
                                     key=lambda m: (not required_features(m.record) <= features, m.id))]
        model = self.model.peek()
        if self._local_wanted() and model in vlms:
            return {"sees": True, "by": model, "vision_models": vlms}
        cloud = self.cloud.peek()
        if cloud is not None:
            endpoint = self._endpoint(cloud)
            if endpoint.capabilities(None).vision:
                return {"sees": True, "by": endpoint.name, "vision_models": vlms}
        return {"sees": False, "by": None, "vision_models": vlms}

    async def title(self, backend_name: str, exchange: list[dict[str, Any]]) -> str | None:
        """A short title for a conversation's first ``exchange``, written by the on-device backend
        that answered it (``backend_name``); None when that was not an on-device one: a title is
        not worth a request to an endpoint (its cost, its privacy). Streamed, so cancelling it (the
        user sent the next message) stops the engine at once."""
        from app.client import Client
        from app.reasoning import toggles_thinking
        from app.titles import MAX_TOKENS, clean_title, title_request

        router = self.router
        if not self.config.auto_title:
            return None
        route = next((r for r in router.routes if r.backend.name == backend_name), None) if router else None
        if route is None or not route.backend.capabilities(None).local:
            return None
        params: dict[str, Any] = {"max_tokens": MAX_TOKENS, "temperature": 0}
        if backend_name == "webllm" and toggles_thinking(self.model.peek()):
            params["enable_thinking"] = False  # a title needs no thinking
        client = Client(route.backend)
        async with await client.chat.completions.create(messages=title_request(exchange), stream=True,
                                                        **params) as stream:
            async for _chunk in stream:
                pass
        return clean_title(stream.content)

    def device(self) -> str:
        """This device's GPU in words (benchmark results are kept per device)."""
        gpu = self.gpu.peek()
        if gpu is None or not getattr(gpu, "available", False):
            return "no WebGPU"
        return gpu.description or " ".join(p for p in (gpu.vendor, gpu.architecture, gpu.device) if p) or "unknown GPU"

    async def benchmark(self, model_id: str, *, prompts: Any = None) -> Any:
        """Load ``model_id`` (a downloaded one) and run the benchmark's prompt set on it
        (:mod:`app.benchmark`); the result is kept per model and device (``benchmarks``). The chat's
        own model is loaded again by the next message."""
        from app import benchmark
        from app.client import Client
        from app.errors import UsageError

        prompts = benchmark.check_prompts(benchmark.PROMPTS if prompts is None else prompts)
        if not self._local_wanted():
            raise UsageError("a benchmark runs a model on this device's GPU, and WebGPU is not available here")
        manager = await self.models()
        status = await manager.status(model_id)  # ModelNotFound for an unknown id
        if status.state not in ("downloaded", "loaded"):
            raise UsageError(f"{model_id} is not downloaded: download it first, then benchmark it")
        if self._benchmarking:
            raise UsageError("a benchmark is already running")
        self._benchmarking = True
        try:
            if self.local_backend().loaded is not None:
                await manager.unload()  # the load is part of what is measured
            started = time.perf_counter()
            await self.load_model(model_id, reason="Benchmark: loading")
            load_s = time.perf_counter() - started
            self.status.set(f"Benchmark: running {model_id}")
            result = await benchmark.run_prompts(Client(self.local_backend()), model_id, device=self.device(),
                                                 load_s=load_s, prompts=prompts)
        finally:
            self._benchmarking = False
            self.status.set("")
        self.benchmarks.set({**self.benchmarks.peek(), (result.device, model_id): result})
        await self._keep(f"bench|{result.device}|{model_id}", result.to_record())
        return result

    async def load_benchmarks(self) -> dict[tuple[str, str], Any]:
        """The kept benchmark results, by (device, model)."""
        from app.benchmark import BenchResult

        found = {}
        if self._kv is not None:
            for key, record in (await self._kv.items()).items():
                if isinstance(key, str) and key.startswith("bench|") and isinstance(record, dict):
                    try:
                        result = BenchResult.from_record(record)
                    except (KeyError, TypeError, ValueError):
                        continue  # a record of an older shape: not worth failing the panel for
                    found[(result.device, result.model)] = result
        self.benchmarks.set({**found, **self.benchmarks.peek()})
        return self.benchmarks.peek()

    async def follow_model(self, model_id: str) -> bool:
        """Make ``model_id`` (a conversation's own) the chosen model when it is on this device
        (stored or loaded), without loading it yet: the next message loads it. A model no longer
        here, or unknown, changes nothing (opening a conversation never starts a download)."""
        if model_id == self.model.peek() or not self._local_wanted():
            return model_id == self.model.peek()
        manager = await self.models()
        try:
            status = await manager.status(model_id)
        except AppError:
            return False
        if status.state not in ("downloaded", "loaded"):
            return False
        self.model.set(model_id)
        await self._keep("model", model_id)
        return True

    def knowledge(self) -> Any:
        """The user's files the chat can answer from (:class:`app.knowledge.Knowledge`): embedded by
        ``config.embedding_model`` in the web-llm engine (loaded beside the chat model on first use),
        kept in IndexedDB (store ``knowledge``).

            k = session.current.knowledge()
            await k.add("notes.md", text)
            hits = await k.search("when is the launch?", k=3)
        """
        if self._knowledge is None:
            from app.knowledge import Knowledge

            backend = self.local_backend()
            model = self.config.embedding_model

            async def ready() -> None:
                await backend.load_embedding(model, on_progress=self._embedding_progress)

            self._knowledge = Knowledge(backend, self.parts.knowledge_kv(), pdf_text=self.parts.pdf_text,
                                        ready=ready, index=self.parts.vector_index)
        return self._knowledge

    async def retrieve(self, question: str, k: int = 4) -> list[Any]:
        """The passages of the user's files for a chat question ([] when there are none, or the
        Files sheet's "Answer from these files" is off): nothing loads while no file was added."""
        if not self.use_files.peek():
            return []
        knowledge = self.knowledge()
        if not await knowledge.files():
            return []
        return await knowledge.search(question, k=k)

    def _embedding_progress(self, report: dict[str, Any]) -> None:
        progress = report.get("progress")
        if isinstance(progress, (int, float)) and progress < 1:
            self.status.set(f"Loading embedding model {self.config.embedding_model}: {progress:.0%}")
        else:
            self.status.set("")

    def close(self) -> None:
        """Stop listening to the browser (online events) and forget the built client."""
        self._close_built()


current: Session | None = None  # the page's session once opened (see :func:`open_session`)


async def open_session(*, kv: Any = None, overrides: dict[str, Any] | None = None, fetch_json: Any = None,
                       parts: Parts | None = None) -> Session:
    """The page's session: ``static/chat-config.json`` (absent: the defaults), the vendored web-llm
    version (``static/vendor/VERSIONS.json``), and what the user chose before (``kv``: the chosen
    model, the endpoint without its key, the chat settings). ``overrides`` (an embedding page's
    options) replace config fields for this page only; nothing chosen then is kept.

        from app import session
        s = session.current                          # in the page, once the chat has mounted
        client = await s.client()
    """
    from dataclasses import replace

    global current
    if fetch_json is None:
        from app import ffi

        fetch_json = ffi.fetch_json
    try:
        raw = await fetch_json(CONFIG_URL)
    except Exception:  # no config file (404, offline): web-llm's prebuilt models, no cloud endpoint
        raw = None
    config = PageConfig.from_dict(raw)
    try:
        version = str((await fetch_json(VERSIONS_URL))["@mlc-ai/web-llm"])
    except Exception:  # not a build of ours (no VERSIONS.json): the pinned release's layout
        version = None
    saved: dict[str, Any] = {}
    if kv is not None and not overrides:
        saved = await kv.get("chat") or {}
        chosen = await kv.get("model")
        if chosen:  # the model last chosen in the picker
            config = replace(config, model=str(chosen))
        if saved.get("cloud"):  # a saved endpoint (without its key) replaces the configured one
            config = replace(config, cloud=CloudConfig.parse(saved["cloud"]))
    if overrides:
        config = replace(config, **overrides)
    session = Session(config, webllm_version=version, parts=parts, kv=None if overrides else kv,
                      settings=Settings.from_record(saved.get("settings")))
    current = session
    return session


def _shown(event: dict[str, Any]) -> bool:
    """Whether the Activity view lists an event: requests, retries and health always; model progress
    only when it ends (a download reports ten times a second)."""
    name = str(event.get("event", ""))
    if name == "app.model.download":
        return event.get("phase") in ("done", "cancelled", "failed")
    if name == "app.model.load":
        return float(event.get("progress") or 0) >= 1.0
    return True


def activity_line(event: dict[str, Any]) -> str:
    """One Activity line: ``"12:03:04 chat end · webllm · stop · 12/40 tokens · 1.52 s"``."""
    stamp = time.strftime("%H:%M:%S", time.localtime(float(event.get("time") or 0)))
    name = str(event.get("event", ""))
    if name == "gen_ai.request.start":
        text = f"chat start · {event.get('gen_ai.request.model') or 'default model'}"
    elif name == "gen_ai.first_token":
        text = f"first token after {float(event['time_to_first_token_s']):.2f} s"
    elif name == "gen_ai.request.end":
        finish = ",".join(event.get("gen_ai.response.finish_reasons") or ()) or "-"
        used = event.get("gen_ai.usage.input_tokens"), event.get("gen_ai.usage.output_tokens")
        tokens = f" · {used[0]}/{used[1]} tokens" if used[0] is not None else ""
        text = f"chat end · {event.get('gen_ai.backend')} · {finish}{tokens} · {float(event['duration_s']):.2f} s"
    elif name == "gen_ai.request.error":
        text = f"chat failed · {event.get('error.type')}: {event.get('error.message')}"
    elif name == "app.request.retry":
        text = (f"retry #{event.get('attempt')} of {event.get('gen_ai.backend')} after "
                f"{event.get('error.type')}: {event.get('error.message')}")
    elif name == "app.health":
        text = "health · " + ", ".join(f"{k}: {v}" for k, v in (event.get("results") or {}).items())
    elif name == "app.model.download":
        text = f"download {event.get('phase')} · {event.get('gen_ai.request.model')}"
    elif name == "app.model.load":
        text = f"loaded · {event.get('gen_ai.request.model')}"
    elif name == "app.model.load.failed":
        text = (f"load failed · {event.get('gen_ai.request.model')} · "
                f"{event.get('error.type')}: {event.get('error.message')}")
    else:
        text = name
    return f"{stamp} {text}"
