# Injected into the page by the browser tests (never shipped): lets a test run Python in the page's
# interpreter and get JSON back. One namespace per page, so objects (a client, a stream) persist
# between calls.
import json
import traceback

import js
from pyodide.code import eval_code_async
from pyodide.ffi import create_proxy

_ns = {"__name__": "__harness__"}


def _plain(value):
    try:
        json.dumps(value)
        return value
    except TypeError:
        return repr(value)


async def _pyrun(source):
    try:
        value = await eval_code_async(source, _ns)
        return json.dumps({"ok": _plain(value)})
    except BaseException as exc:
        return json.dumps({"error": {
            "type": type(exc).__name__,
            "mro": [c.__name__ for c in type(exc).__mro__],
            "message": str(exc),
            "original": getattr(exc, "original", None),
            "param": getattr(exc, "param", None),
            "traceback": traceback.format_exc(),
        }})


js.window.pyrun = create_proxy(_pyrun)
js.document.body.dataset.harness = "ready"
