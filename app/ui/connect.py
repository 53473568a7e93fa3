"""The backends the chat talks to, built from what this page has.

    config = PageConfig.from_dict(await ffi.fetch_json("static/chat-config.json"))
    connector = Connector(config)
    connector.gpu.set(report)                 # app.runtime.WebGPUReport, once probed
    client = await connector.client()         # web-llm (model loaded) and/or the cloud, via a Router

With WebGPU, web-llm runs ``config.model`` (loaded on first use, progress in ``connector.status``).
With a configured OpenAI-compatible endpoint (the config file, or the settings form: base URL, model,
key) it is a route too; both go through :class:`app.router.Router` with ``config.policy``. Without
WebGPU the endpoint alone serves the chat; with neither, :class:`~app.errors.NoBackendAvailable`
says what to configure. The API key lives in memory only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from app.errors import NoBackendAvailable, UsageError
from app.ui.store import Signal

CONFIG_URL = "static/chat-config.json"
DEFAULT_MODEL = "Qwen2.5-0.5B-Instruct-q4f32_1-MLC"


@dataclass(frozen=True)
class CloudConfig:
    """An OpenAI-compatible endpoint: where, which model, and (in memory only) the key."""

    base_url: str
    model: str
    api_key: str = ""
    label: str = ""

    @classmethod
    def parse(cls, form: dict[str, str]) -> CloudConfig | None:
        """From the settings form; None when base URL is left empty. Bad input -> UsageError."""
        base_url = (form.get("base_url") or "").strip()
        if not base_url:
            return None
        from urllib.parse import urlsplit

        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise UsageError(f"the endpoint must be an http(s) URL, got {base_url!r}")
        model = (form.get("model") or "").strip()
        if not model:
            raise UsageError("the endpoint needs a model id (e.g. gpt-4o-mini)")
        return cls(base_url=base_url.rstrip("/"), model=model, api_key=(form.get("api_key") or "").strip(),
                   label=(form.get("label") or "").strip() or parts.netloc)

    def to_record(self) -> dict[str, str]:
        """What is kept across reloads: everything but the key."""
        return {"base_url": self.base_url, "model": self.model, "label": self.label}


@dataclass(frozen=True)
class PageConfig:
    """``static/chat-config.json``: the web-llm model to chat with, its appConfig (None: web-llm's
    prebuilt list), the routing policy, and an optional endpoint."""

    model: str | None = DEFAULT_MODEL
    app_config: dict[str, Any] | None = None
    policy: str = "prefer-local"
    cloud: CloudConfig | None = None
    # The app-shell service worker (sw.js: the app starts offline after one visit). True: registered,
    # except in automated browsers (navigator.webdriver: tests count and overlay requests); "always":
    # registered there too; False: never.
    offline: bool | str = False

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> PageConfig:
        d = d or {}
        from app.router import POLICIES

        policy = d.get("policy", "prefer-local")
        if policy not in POLICIES:
            raise UsageError(f"policy must be one of {', '.join(POLICIES)}, got {policy!r}")
        cloud = CloudConfig.parse({k: str(v) for k, v in d["cloud"].items()}) if d.get("cloud") else None
        app_config = d.get("app_config")
        if app_config is not None and not isinstance(app_config, dict):
            raise UsageError("app_config must be an object with a model_list")
        offline = d.get("offline", False)
        if offline not in (True, False, "always"):
            raise UsageError(f"offline must be true, false or \"always\", got {offline!r}")
        return cls(model=d.get("model", DEFAULT_MODEL) or None, app_config=app_config, policy=policy, cloud=cloud,
                   offline=offline)


class Connector:
    """Builds (once, again after a settings change) the client the chat uses. See the module docstring."""

    def __init__(self, config: PageConfig, *, make_local: Callable[..., Any] | None = None,
                 make_cloud: Callable[..., Any] | None = None) -> None:
        self.config = config
        self.gpu: Signal[Any] = Signal(None)  # app.runtime.WebGPUReport once probed
        self.cloud: Signal[CloudConfig | None] = Signal(config.cloud)
        self.status: Signal[str] = Signal("")  # "Loading model …: 40%" and the like
        self.model: Signal[str | None] = Signal(config.model)
        self._make_local = make_local
        # How a model gets loaded: the model picker's (app.ui.models.ModelsState.load) once mounted,
        # so the picker shows a load the chat started; else the local backend's own load.
        self.loader: Callable[..., Any] | None = None
        self._make_cloud = make_cloud
        self._local: Any = None
        self._client: Any = None
        self._built_for: tuple[Any, ...] | None = None
        self._stop_watching: Any = None  # removes the online/offline listeners of the current router

    def describe(self) -> str:
        """What answers, in words, for the page's notice."""
        gpu, cloud = self.gpu.peek(), self.cloud.peek()
        local = gpu is not None and gpu.available and self.model.peek()
        if local and cloud:
            return f"Answers come from {self.model.peek()} on this device, or {cloud.label} when it cannot."
        if local:
            return f"Answers come from {self.model.peek()}, running on this device."
        if cloud:
            return f"Answers come from {cloud.label} ({cloud.model})."
        return ""

    async def client(self) -> Any:
        from app.client import Client
        from app.router import Route, Router

        gpu, cloud, model = self.gpu.peek(), self.cloud.peek(), self.model.peek()
        key = (bool(gpu and gpu.available), cloud, model)
        if self._client is None or key != self._built_for:
            routes = []
            if gpu is not None and gpu.available and model:
                routes.append(Route(self._local_backend(), priority=0))
            if cloud is not None:
                routes.append(Route(self._cloud_backend(cloud), priority=1))
            if not routes:
                why = "this browser has no WebGPU" if gpu is not None and not gpu.available else "no model is chosen"
                raise NoBackendAvailable(f"Cannot chat yet: {why} and no cloud endpoint is configured. "
                                         "Add an OpenAI-compatible endpoint under Settings.")
            router = Router(routes, policy=self.config.policy, online=_online)
            if self._stop_watching is not None:
                self._stop_watching()
            self._stop_watching = _watch_online(router.connectivity_changed)
            self._client = Client(router)
            self._built_for = key
        if self._local is not None and model and self._local.loaded != model:
            await self._load(model, fallback=cloud is not None)
        return self._client

    def local_backend(self) -> Any:
        """The web-llm backend the chat uses (created on first ask); the model manager shares it."""
        return self._local_backend()

    def _local_backend(self) -> Any:
        if self._local is None:
            if self._make_local is not None:
                self._local = self._make_local(app_config=self.config.app_config)
            else:
                from app.backends.webllm import WebLLMBackend

                self._local = WebLLMBackend(app_config=self.config.app_config)
        return self._local

    def _cloud_backend(self, cloud: CloudConfig) -> Any:
        make = self._make_cloud
        if make is None:
            from app.backends.openai_compat import OpenAICompatBackend as make
        return make(base_url=cloud.base_url, api_key=cloud.api_key or None, model=cloud.model,
                    name=cloud.label or None)

    async def _load(self, model: str, *, fallback: bool) -> None:
        def progress(report: dict[str, Any]) -> None:
            share = report.get("progress")
            percent = f": {round(float(share) * 100)}%" if isinstance(share, (int, float)) else ""
            self.status.set(f"Loading {model}{percent}")

        self.status.set(f"Loading {model}")
        try:
            await (self.loader or self._local.load)(model, on_progress=progress)
        except Exception as exc:
            if not fallback:
                self.status.set("")
                raise
            # The router skips a local backend without its model and answers from the cloud.
            self.status.set(f"{model} could not load ({type(exc).__name__}); using the cloud endpoint")
            return
        self.status.set("")


def _watch_online(on_change: Any) -> Any:
    """The browser's online/offline events -> the router (nothing to watch under CPython)."""
    from app import ffi
    from app.errors import BrowserOnly

    try:
        return ffi.watch_online(on_change)
    except BrowserOnly:
        return None


def _online() -> bool:
    from app import ffi

    try:
        return ffi.is_online()
    except Exception:  # CPython (unit tests): assume online
        return True
