"""Mount the chat on the page: open the session (:mod:`app.session`, the composition root), build the
views over it, restore the conversations. Called by :mod:`app.main` after the page says "Ready", so
start-up does not wait for any of it.

Nothing here builds a backend, a router or a model manager: the session does, and the views only
render its state and call its intents.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

from app import ffi
from app.errors import AppError
from app.session import Session, open_session
from app.ui.chat import ChatState, KvStore, ScopedKv
from app.ui.view import App, spawn

current: App | None = None  # the mounted app (tests and the host API reach it here)
notice: Any = None  # the banner about this tab's version and storage (app.ui.app_notice.AppNotice)
models: Any = None  # the model picker's state (app.ui.models.ModelsState) once mounted
bridge: Any = None  # the host API (app.ui.embed.HostBridge) when embedded by static/widget.js
python: Any = None  # the Python panel (app.ui.playground.PanelView) once opened


async def mount(gpu: Awaitable[Any]) -> App | None:
    """Build and show the chat; ``gpu`` resolves to the page's WebGPUReport. None: the page is framed
    by a site not allowed to embed it, and shows only why."""
    global current, notice
    from app.config import POLICIES
    from app.ui.app_notice import AppNotice
    from app.ui.embed import check_option, conversation_scope, host_origin, refusal
    from app.ui.view import THEMES

    # First: an open that waits for an older tab, or a newer tab taking the storage, is said at once.
    notice = AppNotice(ffi.apply_update)
    await ffi.watch_storage(notice.show)
    settings_store = KvStore("settings")
    query = _query()
    embed = bool(query.get("embed"))
    theme = await settings_store.get("theme") or "auto"
    overrides: dict[str, Any] = {}
    if embed:  # options of static/widget.js: they apply to this page only and are not saved
        ffi.set_root_attr("data-embed", "true")
        if query.get("model"):
            overrides["model"] = query["model"]
        if query.get("policy"):
            overrides["policy"] = check_option("policy", query["policy"], POLICIES)
        if query.get("theme"):
            theme = check_option("theme", query["theme"], THEMES)
    session = await open_session(kv=settings_store, overrides=overrides or None)
    # Before any conversation is read or any control answers: run only where this app may be framed.
    where = ffi.framing()
    why = refusal(where["own"], where["ancestors"], session.config.embed_hosts)
    if why is not None:
        refuse(why)
        return None
    # An embedded chat keeps its conversations apart, one space per embedding site.
    framer = where["ancestors"][0] if where["ancestors"] else None
    scope = conversation_scope(framer or (host_origin(query.get("host")) if embed else None))
    # Other tabs of this scope announce what they wrote on one channel; the chat shows it live.
    tabs: list[ChatState] = []
    post, close_channel = ffi.open_channel(f"py-chat-conversations|{scope}", lambda message: tabs[0].receive(message))
    chat = ChatState(connect=session.client, kv=ScopedKv(KvStore("conversations"), scope), settings=session.settings,
                     broadcast=post, model=session.model.peek, window=session.context_window, prefs=settings_store,
                     titler=session.title, follow_model=session.follow_model,
                     retrieve=None if embed else session.retrieve)  # an embedded chat reads none of the user's files
    tabs.append(chat)
    await chat.load()
    current = App(chat, session, settings_store, str(theme))
    current.scope.add(close_channel)
    # The picker needs web-llm's module (6 MB) for its catalog: it loads when the Models sheet first
    # opens, so a page that only chats pays nothing for it.
    current.sheets.when_first_opened("models", lambda: spawn(_mount_models_safely(session)))
    if not embed:
        mount_python_on_open(session, current)
        current.sheets.when_first_opened("files", lambda: _mount_files(session, current))
    else:
        ffi.set_hidden("open-files", True)
    if embed:
        mount_host_bridge(chat, query)
    await current.settled()
    ffi.set_attr("chat", "data-state", "ready")
    session.gpu.set(await gpu)
    spawn(session.probe_builtin())  # whether Chrome's built-in model can answer here (GpuNotice says)
    if bridge is not None:  # the host may send now
        bridge.emit("ready", model=session.model.peek())
    if session.config.offline:
        ffi.register_service_worker("sw.js", even_automated=session.config.offline == "always",
                                    on_update=notice.show)
    return current


def refuse(why: str) -> None:
    """Show why the app does not run here, and nothing else of it."""
    print(f"embed: refused: {why}")
    ffi.set_hidden("main", True)
    ffi.set_text("status", why)
    ffi.set_body_state("refused")


async def _mount_models_safely(session: Session) -> None:
    try:
        await mount_models(session)
    except Exception as exc:  # the chat works without the picker (e.g. the web-llm module failed)
        ffi.set_attr("models", "data-state", "failed")
        ffi.set_text("model-current", f"The model list could not load: {exc}")
        raise
    if current is not None:  # the catalog is here now: the header's switcher can say what is stored
        try:
            await current.switcher.refresh()
        except AppError as exc:  # the picker works; the switcher keeps what the events told it
            current.switcher.notice.set(f"The stored models could not be listed: {exc}")


async def mount_models(session: Session) -> Any:
    """The model picker and storage panel over the session's model manager."""
    global models
    from app.ui.models import ModelsState
    from app.ui.models_view import ModelsView

    state = ModelsState(session, await session.models())
    await session.load_benchmarks()  # this device's earlier results, for the table
    state.view = ModelsView(state)  # type: ignore[attr-defined]
    models = state
    await state.refresh()
    return state


def mount_python_on_open(session: Session, app: App) -> None:
    """The Python panel (app/ui/playground.py) mounts when its sheet first opens; a link carrying
    code (``#py=...``) opens it, with the code in the editor, not run."""
    from app.ffi import editor
    from app.ui.links import decode_link  # the panel's own module loads only when it opens

    app.sheets.when_first_opened("python", lambda: spawn(_mount_python(session)))
    if decode_link(editor.page_fragment()) is not None:
        app.sheets_view.open("python")


def _mount_files(session: Session, app: App) -> None:
    """The Files sheet (app/ui/files_view.py) over the session's knowledge, on first open."""
    from app.ui.files import FilesState
    from app.ui.files_view import FilesView

    view = FilesView(FilesState(session.knowledge(), session.use_files))
    app.scope.add(view.dispose)


async def _mount_python(session: Session) -> None:
    global python
    from app.ui.playground import mount as mount_panel

    try:
        python = await mount_panel(session)
    except Exception as exc:  # noqa: BLE001 - the chat goes on without the panel; the panel says why
        ffi.set_attr("python", "data-state", "failed")
        ffi.set_text("py-said", f"The Python panel could not start: {type(exc).__name__}: {exc}")
        raise


def _query() -> dict[str, str]:
    try:
        return ffi.page_query()
    except Exception:
        return {}


def mount_host_bridge(chat: ChatState, query: dict[str, str]) -> None:
    """Open the host API when the page is framed by the origin its ``host`` parameter names."""
    global bridge
    from app.ui.embed import HOST_TAG, HostBridge, host_origin

    origin = host_origin(query.get("host"))
    if origin is None or not ffi.parent_origin_matches(origin):
        print(f"embed: not framed by the host origin {query.get('host')!r}; the host API stays closed")
        return
    box: list[HostBridge] = []
    post, close = ffi.host_channel(origin, HOST_TAG, lambda message: box[0].handle(message))
    bridge = HostBridge(chat, post, spawn)
    bridge.scope.add(close)
    box.append(bridge)
