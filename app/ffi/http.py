"""HTTP through the browser's ``fetch`` (``static/bridge/http.js``): SSE ``data:`` texts or a whole body."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from app.ffi import _core
from app.ffi._reader import TextReader, TextStream

__all__ = ["HttpBridge", "HttpStream"]

HTTP_MODULE_URL = "static/bridge/http.js"


@runtime_checkable
class HttpBridge(Protocol):
    """What app/backends/openai_compat.py uses (tests/unit/backends/test_openai_compat.py FakeHttp)."""

    def HttpStream(self, url: str, *, method: str = "POST", headers: dict[str, str] | None = None,  # noqa: N802
                   body: str | None = None, sse: bool = True) -> TextStream: ...


class HttpStream(TextReader):
    """One HTTP request through the browser's ``fetch``: the SSE ``data:`` texts of a streamed answer
    (``[DONE]`` ends it), or the whole body once when ``sse`` is False. ``cancel()`` aborts the fetch."""

    def __init__(self, url: str, *, method: str = "POST", headers: dict[str, str] | None = None,
                 body: str | None = None, sse: bool = True) -> None:
        if not _core.IN_BROWSER:
            raise _core.browser_only("HttpStream")
        self._controller = _core.js.AbortController.new()
        init: dict[str, Any] = {"method": method, "headers": headers or {}}
        if body is not None:
            init["body"] = body

        async def start() -> Any:
            module = await _core.import_module(HTTP_MODULE_URL)
            return module.request(url, _core.to_js(init), self._controller, sse)

        super().__init__(start, _http_error)

    def cancel(self) -> None:
        self._controller.abort()


def _http_error(exc: BaseException) -> Exception:
    from app.errors import Aborted, BackendUnreachable, from_http_status

    error = getattr(exc, "js_error", None)
    name = str(getattr(error, "name", "") or getattr(exc, "name", ""))
    if name == "HttpError":
        retry = getattr(error, "retryAfter", None)
        return from_http_status(int(error.status), str(error.message),
                                retry_after=None if _core.is_null(retry) else str(retry))
    if name == "AbortError":
        return Aborted("the request was cancelled", original=str(exc))
    return BackendUnreachable(f"could not reach the endpoint: {getattr(exc, 'message', exc)}", original=str(exc))
