"""The page as a whole: its URL and embedding page, connectivity, the service worker, the GPU.

The synchronous helpers call ``static/bridge/page.js``, which ``static/bridge/boot.js`` imports
before any Python runs.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from app.ffi import _core

__all__ = ["PageBridge", "apply_update", "framing", "host_channel", "is_online", "page_is_secure", "page_query",
           "parent_origin_matches", "probe_webgpu", "register_service_worker", "watch_online"]


@runtime_checkable
class PageBridge(Protocol):
    """What the app's start-up and its embedding use of the page (app/ui/page.py, app/ui/connect.py)."""

    async def probe_webgpu(self) -> dict[str, Any]: ...
    def is_online(self) -> bool: ...
    def watch_online(self, on_change: Callable[[bool], None]) -> Callable[[], None]: ...
    def page_query(self) -> dict[str, str]: ...
    def page_is_secure(self) -> bool: ...
    def framing(self) -> dict[str, Any]: ...
    def parent_origin_matches(self, origin: str) -> bool: ...
    def host_channel(self, origin: str, tag: str, handler: Callable[[dict[str, Any]], None]
                     ) -> tuple[Callable[[dict[str, Any]], None], Callable[[], None]]: ...
    def register_service_worker(self, url: str, *, even_automated: bool = False,
                                on_update: Callable[[str], None] | None = None) -> bool: ...
    def apply_update(self) -> None: ...


async def probe_webgpu() -> dict[str, Any]:
    """What ``navigator.gpu.requestAdapter()`` gives this page, as plain data.

    Shape: ``{"api": bool, "adapter": bool, "error": str | None, "info": {...}, "fallback": bool,
    "limits": {name: int}, "features": [str]}``. Interpretation lives in :mod:`app.runtime`.
    """
    if not _core.IN_BROWSER:
        raise _core.browser_only("probe_webgpu")
    js = _core.js
    gpu = getattr(js.navigator, "gpu", None)
    if _core.is_null(gpu):
        return {"api": False, "adapter": False, "error": None}
    try:
        adapter = await gpu.requestAdapter(_core.to_js({"powerPreference": "high-performance"}))
    except Exception as exc:  # a JS exception from requestAdapter itself
        return {"api": True, "adapter": False, "error": str(exc)}
    if _core.is_null(adapter):
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
    if not _core.IN_BROWSER:
        raise _core.browser_only("is_online")
    return bool(_core.js.navigator.onLine)


def watch_online(on_change: Callable[[bool], None]) -> Callable[[], None]:
    """Call ``on_change(online)`` on the window's ``online``/``offline`` events; returns ``stop()``,
    which removes the listeners and frees their proxies.

        stop = ffi.watch_online(router.connectivity_changed)
    """
    if not _core.IN_BROWSER:
        raise _core.browser_only("watch_online")
    window = _core.js.window
    listeners = {"online": _core.create_proxy(lambda event: on_change(True)),
                 "offline": _core.create_proxy(lambda event: on_change(False))}
    for name, proxy in listeners.items():
        window.addEventListener(name, proxy)

    def stop() -> None:
        for name, proxy in listeners.items():
            window.removeEventListener(name, proxy)
            proxy.destroy()
        listeners.clear()

    return stop


def _page() -> Any:
    if not _core.IN_BROWSER:
        raise _core.browser_only("the page URL")
    return _core.bridge_module("page")


def page_query() -> dict[str, str]:
    """The page URL's query parameters (first value of each)."""
    return json.loads(_page().query())


def page_is_secure() -> bool:
    """Whether the page was served over https (then the browser blocks plain http to other hosts)."""
    if not _core.IN_BROWSER:
        raise _core.browser_only("the page URL")
    return str(_core.js.location.protocol) == "https:"


def framing() -> dict[str, Any]:
    """Where this page runs: ``{"own": its origin, "ancestors": the origins of the pages that frame it,
    nearest first ([] in its own tab; None when framed and the browser cannot say by whom)}``."""
    return json.loads(_page().framing())


def parent_origin_matches(origin: str) -> bool:
    """Whether this page is framed by a page of ``origin`` (``location.ancestorOrigins`` where the
    browser has it; elsewhere the referrer's origin)."""
    return bool(_page().parentOriginMatches(origin))


def host_channel(origin: str, tag: str, handler: Callable[[dict[str, Any]], None]
                 ) -> tuple[Callable[[dict[str, Any]], None], Callable[[], None]]:
    """Talk to the embedding page: ``handler(message)`` gets messages from ``window.parent`` whose
    ``event.origin`` is ``origin`` and whose ``source`` field is ``tag`` (everything else is
    ignored); returns ``(post, close)``: ``post(message)`` sends plain data to the parent, only to
    ``origin``; ``close()`` removes the listener and destroys its proxy."""
    if not _core.IN_BROWSER:
        raise _core.browser_only("postMessage")
    page = _page()
    proxy = _core.create_proxy(lambda text: handler(json.loads(text)))
    listener = page.hostListener(origin, tag, proxy)
    _core.js.window.addEventListener("message", listener)
    done = [False]

    def post(message: dict[str, Any]) -> None:
        if not done[0]:
            page.postToParent(json.dumps(message), origin)

    def close() -> None:
        if not done[0]:
            done[0] = True
            _core.js.window.removeEventListener("message", listener)
            proxy.destroy()

    return post, close


def register_service_worker(url: str, *, even_automated: bool = False,
                            on_update: Callable[[str], None] | None = None) -> bool:
    """Register the app-shell service worker at ``url`` (relative to the document), only on http(s)
    and, unless ``even_automated``, not in a browser driven by automation (``navigator.webdriver``).
    Returns whether registration was started; its outcome is logged by the browser.

    ``on_update(state)`` hears of a new version of the app: ``"waiting"`` (installed; it takes over
    when no tab of this version is open, or when :func:`apply_update` is called) or ``"activated"``
    (another tab let it take over; this page goes on running its own version). static/sw.js says
    how a tab keeps one version from start to end.
    """
    if not _core.IN_BROWSER:
        raise _core.browser_only("service workers")
    callback = _core.create_proxy(lambda state: on_update(str(state)) if on_update else None)
    started = bool(_core.bridge_module("page").registerServiceWorker(url, even_automated, callback))
    if not started:
        callback.destroy()
    return started  # the proxy lives as long as the page: a new version may come at any time


def apply_update() -> None:
    """Take the new version the user asked for: the waiting service worker takes over and the page
    reloads (at once when no worker waits; after 3 s if the browser has not let it take over yet, the
    old worker then serving the reload the new version)."""
    if not _core.IN_BROWSER:
        raise _core.browser_only("service workers")
    _core.bridge_module("page").applyUpdate()
