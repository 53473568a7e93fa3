"""What every bridge module shares: the JS handles, value conversion, browser-only stubs, and the
door to ES modules (``static/bridge/boot.js``).

Under CPython this imports fine and every browser-only function raises
:class:`~app.errors.BrowserOnly` with a sentence saying why.
"""

from __future__ import annotations

import json
import sys
from typing import Any

IN_BROWSER = sys.platform == "emscripten"

if IN_BROWSER:  # pragma: no cover - exercised by the browser tests
    import js  # type: ignore[import-not-found]
    from pyodide.ffi import JsException  # type: ignore[import-not-found]
    from pyodide.ffi import JsProxy, create_proxy, jsnull  # type: ignore[import-not-found]
    from pyodide.ffi import to_js as _to_js  # type: ignore[import-not-found]
else:
    js = None
    JsProxy = object
    jsnull = None

    class JsException(Exception):  # never raised under CPython; keeps `except` clauses valid
        pass

    def create_proxy(obj: Any, **kwargs: Any) -> Any:
        raise browser_only("create_proxy")


def browser_only(what: str) -> Exception:
    from app.errors import BrowserOnly  # imported here: start-up in the page never needs it

    return BrowserOnly(f"{what} needs the browser (Pyodide); this is CPython {sys.version.split()[0]}")


def is_null(value: Any) -> bool:
    """JS null or undefined (Pyodide 314 gives ``jsnull`` for null, None for undefined)."""
    return value is None or value is jsnull


# --------------------------------------------------------------------------- conversion


def to_js(value: Any) -> Any:
    """Plain Python data -> a JS value (dicts become plain objects, not Maps).

    Request dicts must cross this way: a raw dict handed to an async JS call is a borrowed proxy
    that Pyodide destroys when the promise settles, while web-llm may still hold it.
    """
    if not IN_BROWSER:
        raise browser_only("to_js")
    return _to_js(value, dict_converter=js.Object.fromEntries)


def to_py(value: Any) -> Any:
    """A JS value -> plain Python data, through JSON: Pyodide's ``to_py`` keeps JS null as ``jsnull``
    (not None), and plain data must compare and serialise like Python's own."""
    if IN_BROWSER and isinstance(value, JsProxy):
        return json.loads(js.JSON.stringify(value))
    return value


# --------------------------------------------------------------------------- ES modules
#
# No JavaScript is ever built from a Python string (the page's Content-Security-Policy forbids
# eval and js.Function). JS lives in static ES modules; static/bridge/boot.js, an external module
# script that index.html runs before PyScript, puts `pyBridge` on globalThis: `importModule(url)`
# (Python cannot write `import()`), and the modules Python calls synchronously.

_modules: dict[str, Any] = {}


def _bridge() -> Any:
    bridge = getattr(js.globalThis, "pyBridge", None)
    if is_null(bridge):
        from app.errors import AppError

        raise AppError("static/bridge/boot.js is not loaded: the page must load it as a module script "
                       "before PyScript's core.js")
    return bridge


def bridge_module(name: str) -> Any:
    """One of the modules boot.js imports statically (``dom``, ``page``), for synchronous calls."""
    if not IN_BROWSER:
        raise browser_only(f"static/bridge/{name}.js")
    return getattr(_bridge(), name)


def absolute_url(url: str) -> str:
    """``url`` resolved against the document (works under any sub-path)."""
    return str(js.URL.new(url, js.document.baseURI).href)


async def import_module(url: str) -> Any:
    """``import(url)`` of an ES module, resolved against the document; each module once."""
    if not IN_BROWSER:
        raise browser_only("import_module")
    absolute = absolute_url(url)
    if absolute not in _modules:
        _modules[absolute] = await _bridge().importModule(absolute)
    return _modules[absolute]


# --------------------------------------------------------------------------- environment


def versions() -> dict[str, str]:
    """Python and Pyodide versions of the running interpreter and, in a page, how it started
    (static/python-start.js): ``start`` is "snapshot" (restored from the build's memory snapshot)
    or "fresh" (initialised in this visit), ``start_ms`` how long that took."""
    out = {"python": sys.version.split()[0]}
    if IN_BROWSER:
        import pyodide  # type: ignore[import-not-found]

        out["pyodide"] = pyodide.__version__
        started = js.performance.getEntriesByName("python-start")
        if started.length:
            out["start"] = "snapshot" if started[0].detail.snapshot else "fresh"
            out["start_ms"] = str(round(started[0].duration))
    return out


async def fetch_json(url: str) -> Any:
    """GET ``url`` (relative to the document) and parse it as JSON."""
    if not IN_BROWSER:
        raise browser_only("fetch_json")
    response = await js.fetch(absolute_url(url))
    if not response.ok:
        from app.errors import ModelFetchFailed

        raise ModelFetchFailed(f"GET {url} answered {response.status}")
    return json.loads(await response.text())


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
        raise browser_only(f"loading {', '.join(missing)}")
    import pyodide_js  # type: ignore[import-not-found]

    await pyodide_js.loadPackage(to_js(missing))
    importlib.invalidate_caches()
    for name in missing:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            from app.errors import AppError

            raise AppError(f"could not load the vendored package {name!r}: {exc}") from exc
