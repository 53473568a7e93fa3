"""Mount the chat on the page: read the config and saved settings, build the views, restore the
conversations. Called by :mod:`app.main` after the page says "Ready", so start-up does not wait
for any of it.

``static/chat-config.json`` (optional) configures what answers: see :class:`app.ui.connect.PageConfig`.
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import replace
from typing import Any

from app import ffi
from app.ui.chat import Chat, KvStore, Settings
from app.ui.connect import CONFIG_URL, CloudConfig, Connector, PageConfig
from app.ui.store import Signal
from app.ui.view import App

current: App | None = None  # the mounted app (tests and the host API reach it here)
models: Any = None  # the model picker's state (app.ui.models.ModelsState) once mounted


async def read_config(url: str = CONFIG_URL) -> PageConfig:
    try:
        raw = await ffi.fetch_json(url)
    except Exception:  # no config file: web-llm's prebuilt models, no cloud endpoint
        raw = None
    return PageConfig.from_dict(raw)


async def mount(gpu: Awaitable[Any]) -> App:
    """Build and show the chat; ``gpu`` resolves to the page's WebGPUReport."""
    global current
    config = await read_config()
    settings_store = KvStore("settings")
    saved = await settings_store.get("chat") or {}
    chosen = await settings_store.get("model")
    if chosen:  # the model last chosen in the picker
        config = replace(config, model=str(chosen))
    theme = await settings_store.get("theme") or "auto"
    if saved.get("cloud"):  # a saved endpoint (without its key) replaces the configured one
        config = replace(config, cloud=CloudConfig.parse(saved["cloud"]))
    query = _query()
    embed = bool(query.get("embed"))
    if embed:  # options of static/widget.js: they apply to this page only and are not saved
        from app.router import POLICIES
        from app.ui.embed import check_option
        from app.ui.view import THEMES

        ffi.set_root_attr("data-embed", "true")
        if query.get("model"):
            config = replace(config, model=query["model"])
        if query.get("policy"):
            config = replace(config, policy=check_option("policy", query["policy"], tuple(POLICIES)))
        if query.get("theme"):
            theme = check_option("theme", query["theme"], THEMES)
    connector = Connector(config)
    chat = Chat(connect=connector.client, kv=KvStore("conversations"),
                settings=Signal(Settings.from_record(saved.get("settings"))))
    await chat.load()
    current = App(chat, connector, settings_store, str(theme))
    # The picker needs web-llm's module (6 MB) for its catalog: it loads when the panel is opened,
    # so a page that only chats pays nothing for it.
    panel = ffi.node("models-open")
    opened: list[bool] = []

    def on_toggle(_facts: dict[str, Any]) -> bool:
        if not opened and ffi.get_prop(panel, "open"):
            opened.append(True)
            from app.ui.view import _spawn

            _spawn(_mount_models_safely(connector, config, settings_store))
        return False

    current.models_listener = ffi.listen(panel, "toggle", on_toggle)  # type: ignore[attr-defined]
    on_toggle({})  # already open (e.g. restored by the browser)
    if embed:
        mount_host_bridge(chat, query)
    ffi.set_attr("chat", "data-state", "ready")
    connector.gpu.set(await gpu)
    if bridge is not None:  # the host may send now
        bridge.emit("ready", model=connector.model.peek())
    if config.offline:
        ffi.register_service_worker("sw.js", even_automated=config.offline == "always")
    return current


async def _mount_models_safely(connector: Connector, config: PageConfig, settings_store: KvStore) -> None:
    try:
        await mount_models(connector, config, settings_store)
    except Exception as exc:  # the chat works without the picker (e.g. the web-llm module failed)
        ffi.set_attr("models", "data-state", "failed")
        ffi.set_text("model-current", f"The model list could not load: {exc}")
        raise


async def mount_models(connector: Connector, config: PageConfig, settings_store: KvStore) -> Any:
    """The model picker and storage panel over the model manager, sharing the chat's backend. The
    catalog is web-llm's prebuilt list, the config's ``app_config.model_list``, and the user's models."""
    global models
    from app.models.catalog import Catalog
    from app.models.manager import ModelManager
    from app.ui.models import ModelsState
    from app.ui.models_view import ModelsView
    from app.ui.store import watch

    catalog = await Catalog.load(extra=(config.app_config or {}).get("model_list", []))
    manager = ModelManager(catalog, connector.local_backend())
    state = ModelsState(catalog, manager, connector)
    connector.loader = state.load
    state.view = ModelsView(state)  # type: ignore[attr-defined]
    state.keep = watch(connector.model, lambda new, _old: _spawn_put(settings_store, "model", new))  # type: ignore[attr-defined]
    models = state
    await state.refresh()
    return state


def _query() -> dict[str, str]:
    try:
        return ffi.page_query()
    except Exception:
        return {}


bridge: Any = None  # the host API (app.ui.embed.HostBridge) when embedded by static/widget.js


def mount_host_bridge(chat: Chat, query: dict[str, str]) -> None:
    """Open the host API when the page is framed by the origin its ``host`` parameter names."""
    global bridge
    from app.ui.embed import HOST_TAG, HostBridge, host_origin
    from app.ui.view import _spawn

    origin = host_origin(query.get("host"))
    if origin is None or not ffi.parent_origin_matches(origin):
        print(f"embed: not framed by the host origin {query.get('host')!r}; the host API stays closed")
        return
    box: list[HostBridge] = []
    post, close = ffi.host_channel(origin, HOST_TAG, lambda message: box[0].handle(message))
    bridge = HostBridge(chat, post, _spawn)
    bridge.scope.add(close)
    box.append(bridge)


def _spawn_put(store: KvStore, key: str, value: Any) -> None:
    from app.ui.view import _spawn

    _spawn(store.put(key, value))
