"""The only Python that touches JavaScript: one small bridge module per concern.

    from app.ffi import storage          # the bridge a consumer needs, typed by its Protocol
    await storage.kv_get("settings", "theme")

    from app import ffi                  # or every public name at once, as before the split
    await ffi.kv_get("settings", "theme")

=================  ===============================================================  =================
module             what                                                             Protocol
=================  ===============================================================  =================
``_core``          IN_BROWSER, to_js/to_py, import_module, fetch_json, versions,    (shared)
                   load_packages, browser-only stubs
``_reader``        the batching stream reader (static/bridge/reader.js)             (shared)
``engine``         web-llm's worker engine, ChunkIterator, webllm_exports           EngineBridge
``http``           fetch as SSE texts or one body (static/bridge/http.js)           HttpBridge
``storage``        kv_*, store_*, staging_*, FileDownload, estimate/persist          StorageBridge,
                   (static/storage.js), watch_storage (other tabs)                  KeyValueBridge,
                                                                                    StorageEvents
``prompt_api``     Chrome's LanguageModel (static/bridge/prompt-api.js)             PromptApiBridge
``dom``            Node handles, element, listen, render_markdown, set_text, ...    DomBridge
``page``           page_query, host_channel, service worker (+ apply_update),       PageBridge
                   online, probe_webgpu
``channel``        open_channel: messages between the app's tabs (BroadcastChannel)  ChannelBridge
``editor``         the Python panel's editor, the URL fragment                      EditorBridge
``files``          save text as a download, read a picked file                      FilesBridge
``images``         images picked, pasted or dropped: checked, resized, data URLs    ImagesBridge
=================  ===============================================================  =================

Everything converts values across the Pyodide bridge, wraps Python callables for JS (and destroys
those proxies), or awaits JS promises; the rest of ``app/`` calls these functions with plain data and
gets plain data back, so it imports and unit-tests under CPython, where every browser-only function
raises :class:`~app.errors.BrowserOnly` with a sentence saying why. No JavaScript is built from Python
strings: the JS lives in static ES modules (static/bridge/, static/storage.js, static/render.js), so
the page can forbid eval in its Content-Security-Policy.
"""

from app.ffi._core import IN_BROWSER, fetch_json, import_module, load_packages, to_js, to_py, versions
from app.ffi.channel import ChannelBridge, open_channel
from app.ffi.dom import (
    DomBridge,
    Node,
    append,
    append_node_text,
    click,
    confirm,
    copy_text,
    element,
    focus,
    get_prop,
    insert_before,
    listen,
    node,
    remove,
    render_markdown,
    replace_children,
    scroll_to_end,
    set_attr,
    set_body_state,
    set_hidden,
    set_node_attr,
    set_node_text,
    set_prop,
    set_root_attr,
    set_rows,
    set_text,
    text_node,
)
from app.ffi.engine import (
    ChunkIterator,
    EngineBridge,
    EngineHandle,
    call_method,
    create_engine,
    engine_chat,
    engine_embed,
    engine_failure,
    engine_interrupt,
    engine_reload,
    engine_set_app_config,
    engine_unload,
    webllm_exports,
)
from app.ffi.http import HttpBridge, HttpStream
from app.ffi.page import (
    PageBridge,
    apply_update,
    framing,
    host_channel,
    is_online,
    page_is_secure,
    page_query,
    parent_origin_matches,
    probe_webgpu,
    register_service_worker,
    watch_online,
)
from app.ffi.prompt_api import (
    PromptApiBridge,
    PromptSession,
    PromptStream,
    prompt_api_availability,
    prompt_api_create,
    prompt_api_present,
)
from app.ffi.storage import (
    FileDownload,
    KeyValueBridge,
    StorageBridge,
    StorageEvents,
    fetch_text,
    head_size,
    kv_delete,
    kv_get,
    kv_items,
    kv_put,
    kv_write,
    staging_delete,
    staging_list,
    storage_estimate,
    storage_persist,
    store_delete,
    store_list,
    store_put_text,
    watch_storage,
)

__all__ = [
    "ChannelBridge", "open_channel",
    "IN_BROWSER", "fetch_json", "import_module", "load_packages", "to_js", "to_py", "versions",
    "DomBridge", "Node", "append", "append_node_text", "click", "confirm", "copy_text", "element", "focus", "get_prop",
    "insert_before", "listen", "node", "remove", "render_markdown", "replace_children", "scroll_to_end",
    "set_attr", "set_body_state", "set_hidden", "set_node_attr", "set_node_text", "set_prop", "set_root_attr",
    "set_rows", "set_text", "text_node",
    "ChunkIterator", "EngineBridge", "EngineHandle", "call_method", "create_engine", "engine_chat", "engine_embed",
    "engine_failure", "engine_interrupt", "engine_reload", "engine_set_app_config", "engine_unload", "webllm_exports",
    "HttpBridge", "HttpStream",
    "PageBridge", "framing", "host_channel", "is_online", "page_is_secure", "page_query", "parent_origin_matches",
    "apply_update", "probe_webgpu",
    "register_service_worker", "watch_online",
    "PromptApiBridge", "PromptSession", "PromptStream", "prompt_api_availability", "prompt_api_create",
    "prompt_api_present",
    "FileDownload", "KeyValueBridge", "StorageBridge", "fetch_text", "head_size", "kv_delete", "kv_get",
    "kv_items", "kv_put", "kv_write", "staging_delete", "staging_list", "storage_estimate", "storage_persist",
    "store_delete", "store_list", "store_put_text", "StorageEvents", "watch_storage",
]
