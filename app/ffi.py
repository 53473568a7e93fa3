"""The one module that touches JavaScript.

Everything that converts values across the Pyodide bridge (``to_js``), wraps Python callables for JS
(``create_proxy``), destroys those proxies, or awaits a JS promise lives here. The rest of ``app/``
is plain Python: it calls these functions with plain data and gets plain data back, so it imports
and unit-tests under CPython. No ``JsProxy`` is returned from a public function of this module except
:class:`JsHandle`, an opaque token other modules hand back to this one.

Under CPython the module imports fine and every browser-only function raises
:class:`~app.errors.BrowserOnly` with a sentence saying why.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from typing import Any

from app.errors import BrowserOnly

IN_BROWSER = sys.platform == "emscripten"

if IN_BROWSER:  # pragma: no cover - exercised by the browser tests
    import js  # type: ignore[import-not-found]
    from pyodide.ffi import JsProxy, create_proxy, jsnull  # type: ignore[import-not-found]
    from pyodide.ffi import to_js as _to_js  # type: ignore[import-not-found]
else:
    js = None
    JsProxy = object
    jsnull = None


def _browser_only(what: str) -> BrowserOnly:
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
    """A JS value -> plain Python data (objects become dicts); Python values pass through."""
    if IN_BROWSER and isinstance(value, JsProxy):
        return value.to_py()
    return value


@contextlib.contextmanager
def callback(fn: Callable[..., Any]) -> Iterator[Any]:
    """A JS-callable proxy of ``fn`` for the duration of the ``with`` block, destroyed after."""
    if not IN_BROWSER:
        raise _browser_only("callback")
    proxy = create_proxy(fn)
    try:
        yield proxy
    finally:
        proxy.destroy()


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


def base_url() -> str:
    """The document's base URL; every asset URL is resolved against it (works under any sub-path)."""
    if not IN_BROWSER:
        raise _browser_only("base_url")
    return str(js.document.baseURI)


# --------------------------------------------------------------------------- DOM (by element id)
#
# The page's markup is static HTML; Python only sets text, attributes and visibility, and builds
# rows from text. Nothing here parses HTML, so no model or user string can become markup.


def _el(element_id: str) -> Any:
    if not IN_BROWSER:
        raise _browser_only("the DOM")
    el = js.document.getElementById(element_id)
    if el is None:
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
