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

# Each name is imported from its module on first use (PEP 562), so the page's first Python (app/main.py:
# "Ready" needs the DOM and versions only) does not import every bridge module before it shows.
_WHERE = {
    **dict.fromkeys(("IN_BROWSER", "fetch_json", "import_module", "load_packages", "to_js", "to_py",
                     "versions"), "_core"),
    **dict.fromkeys(("ChannelBridge", "open_channel"), "channel"),
    **dict.fromkeys(("DomBridge", "Node", "append", "append_node_text", "click", "confirm", "copy_text",
                     "element", "focus", "get_prop", "insert_before", "listen", "node", "remove",
                     "render_markdown", "replace_children", "scroll_to_end", "set_attr",
                     "set_body_state", "set_hidden", "set_node_attr", "set_node_text", "set_prop",
                     "set_root_attr", "set_rows", "set_text", "text_node"), "dom"),
    **dict.fromkeys(("ChunkIterator", "EngineBridge", "EngineHandle", "call_method", "create_engine",
                     "engine_chat", "engine_embed", "engine_failure", "engine_interrupt",
                     "engine_reload", "engine_set_app_config", "engine_unload", "webllm_exports"), "engine"),
    **dict.fromkeys(("HttpBridge", "HttpStream"), "http"),
    **dict.fromkeys(("PageBridge", "apply_update", "framing", "host_channel", "is_online",
                     "page_is_secure", "page_query", "parent_origin_matches", "probe_webgpu",
                     "register_service_worker", "watch_online"), "page"),
    **dict.fromkeys(("PromptApiBridge", "PromptSession", "PromptStream", "prompt_api_availability",
                     "prompt_api_create", "prompt_api_present"), "prompt_api"),
    **dict.fromkeys(("FileDownload", "KeyValueBridge", "StorageBridge", "StorageEvents", "fetch_text",
                     "head_size", "kv_delete", "kv_get", "kv_items", "kv_put", "kv_write",
                     "staging_delete", "staging_list", "storage_estimate", "storage_persist",
                     "store_delete", "store_list", "store_put_text", "watch_storage"), "storage"),
}


def __getattr__(name: str):
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'app.ffi' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f"app.ffi.{module}"), name)
    globals()[name] = value
    return value


__all__ = list(_WHERE)
