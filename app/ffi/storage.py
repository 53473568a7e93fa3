"""Browser storage (``static/storage.js``): the app's IndexedDB key-value stores, web-llm's model
stores (Cache API, IndexedDB, OPFS), downloads into them, quota and persistence. Values cross as
JSON text, so JS null/undefined come back as None.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from app.ffi import _core

__all__ = ["FileDownload", "KeyValueBridge", "StorageBridge", "fetch_text", "head_size", "kv_delete",
           "kv_get", "kv_items", "kv_put", "kv_write", "staging_delete", "staging_list", "storage_estimate",
           "storage_persist", "store_delete", "store_list", "store_put_text", "StorageEvents", "watch_storage"]

STORAGE_MODULE_URL = "static/storage.js"


@runtime_checkable
class KeyValueBridge(Protocol):
    """The app's own IndexedDB stores (app/keys.py, the chat's conversations, the catalog's user models)."""

    async def kv_get(self, store: str, key: str) -> Any: ...
    async def kv_put(self, store: str, key: str, value: Any) -> None: ...
    async def kv_delete(self, store: str, key: str) -> None: ...
    async def kv_items(self, store: str) -> dict[str, Any]: ...
    async def kv_write(self, store: str, puts: dict[str, Any], deletes: list[str]) -> None: ...


@runtime_checkable
class Download(Protocol):
    async def wait(self) -> int: ...
    def cancel(self) -> None: ...


@runtime_checkable
class StorageBridge(KeyValueBridge, Protocol):
    """What app/storage.py and app/models/ use (tests/unit/models/fake_store.py FakeStoreApi)."""

    async def store_list(self, store: dict[str, Any]) -> list[dict[str, Any]]: ...
    async def store_delete(self, store: dict[str, Any], entries: list[dict[str, Any]]) -> None: ...
    async def store_put_text(self, store: dict[str, Any], entry: dict[str, Any], text: str) -> None: ...
    async def staging_list(self) -> dict[str, int]: ...
    async def staging_delete(self, urls: list[str]) -> None: ...
    async def head_size(self, url: str) -> int: ...
    async def fetch_text(self, url: str) -> str: ...
    async def storage_estimate(self) -> dict[str, Any]: ...
    async def storage_persist(self) -> bool: ...
    def FileDownload(self, spec: dict[str, Any], on_progress: Callable[[int, bool], None],  # noqa: N802
                     on_waiting: Callable[[bool], None] | None = None) -> Download: ...


@runtime_checkable
class StorageEvents(Protocol):
    """What the page (app/ui/page.py) hears about its storage connections."""

    async def watch_storage(self, on_event: Callable[[str, str], None]) -> Callable[[], None]: ...


async def _storage() -> Any:
    if not _core.IN_BROWSER:
        raise _core.browser_only("browser storage")
    return await _core.import_module(STORAGE_MODULE_URL)


async def _storage_call(name: str, *args: Any) -> Any:
    try:
        return await getattr(await _storage(), name)(*args)
    except _core.JsException as exc:
        raise _storage_error(exc) from None


def _storage_error(exc: BaseException) -> Exception:
    from app.errors import Aborted, AppError, ChecksumMismatch, ModelFetchFailed, QuotaExceeded, StorageClosed

    error = getattr(exc, "js_error", None)
    name = str(getattr(error, "name", "") or getattr(exc, "name", ""))
    message = str(getattr(error, "message", "") or exc)
    if name == "AbortError":
        return Aborted(message)
    if name == "StorageClosed":
        return StorageClosed(message)
    if name == "QuotaExceededError":
        return QuotaExceeded(f"the browser refused to store more: {message}", original=message)
    if name == "ChecksumMismatch":
        return ChecksumMismatch(message)
    if name in ("NetworkError", "SizeMismatch"):
        return ModelFetchFailed(message)
    if name == "HttpError":
        return ModelFetchFailed(message, status=int(error.status))
    return AppError(f"browser storage failed: {name}: {message}")


# --------------------------------------------------------------------------- the app's key-value stores


async def kv_get(store: str, key: str) -> Any:
    """The value under ``key`` in one of the app's IndexedDB stores, or None.

    Stores: ``models``, ``sizes``, ``usage``, ``conversations``, ``settings`` (``staging`` is the
    download manager's).
    """
    return json.loads(await _storage_call("kvGet", store, key))


async def kv_put(store: str, key: str, value: Any) -> None:
    """Store JSON-able ``value`` under ``key``; returns once the write has committed."""
    await _storage_call("kvPut", store, key, json.dumps(value))


async def kv_delete(store: str, key: str) -> None:
    await _storage_call("kvDelete", store, key)


async def kv_items(store: str) -> dict[str, Any]:
    """Every entry of a store as ``{key: value}``."""
    return json.loads(await _storage_call("kvItems", store))


async def kv_write(store: str, puts: dict[str, Any], deletes: list[str]) -> None:
    """Store every ``puts`` entry and remove every ``deletes`` key in one transaction: all or none,
    committed when this returns (a refusal, e.g. ``QuotaExceeded``, leaves the store as it was)."""
    await _storage_call("kvWrite", store, json.dumps(puts), json.dumps(list(deletes)))


async def watch_storage(on_event: Callable[[str, str], None]) -> Callable[[], None]:
    """Call ``on_event(kind, message)`` when another tab affects this tab's IndexedDB connections:
    ``"blocked"`` (an open waits for an older tab to close the database), ``"opened"`` (that wait is
    over) and ``"superseded"`` (a newer version of the app opened the database: this tab closed its
    connection and every later storage call raises :class:`~app.errors.StorageClosed`). What was
    said before the call is said again at once. Returns ``stop()``, which frees the proxy.

        stop = await ffi.watch_storage(lambda kind, message: print(kind, message))
    """
    module = await _storage()
    proxy = _core.create_proxy(lambda kind, message: on_event(str(kind), str(message)))
    unwatch = module.watchStorage(proxy)
    done = [False]

    def stop() -> None:
        if not done[0]:
            done[0] = True
            unwatch()
            proxy.destroy()

    return stop


# --------------------------------------------------------------------------- web-llm's model stores


async def store_list(store: dict[str, Any]) -> list[dict[str, Any]]:
    """Every entry of one of web-llm's stores (``store``: a spec from app.models.layout), as
    ``[{"key": str, "bytes": int}]``; an absent store is empty (and is not created)."""
    return json.loads(await _storage_call("listStore", json.dumps(store)))


async def store_delete(store: dict[str, Any], entries: list[dict[str, Any]]) -> None:
    await _storage_call("deleteEntries", json.dumps(store), json.dumps(entries))


async def store_put_text(store: dict[str, Any], entry: dict[str, Any], text: str) -> None:
    """Commit a small text file already in hand to web-llm's store."""
    await _storage_call("commitText", json.dumps(store), json.dumps(entry), text)


async def staging_list() -> dict[str, int]:
    """``{url: bytes}`` held for partially downloaded files."""
    return json.loads(await _storage_call("listStaging"))


async def staging_delete(urls: list[str]) -> None:
    await _storage_call("deleteStaging", json.dumps(urls))


async def head_size(url: str) -> int:
    """The Content-Length a HEAD request reports for ``url``, or -1 when the server does not say."""
    return int(await _storage_call("headSize", url))


async def fetch_text(url: str) -> str:
    return str(await _storage_call("fetchText", url))


async def storage_estimate() -> dict[str, Any]:
    """``navigator.storage.estimate()`` and ``persisted()``: ``{"usage", "quota", "persisted"}``."""
    return json.loads(await _storage_call("estimate"))


async def storage_persist() -> bool:
    """Ask for persistent storage (``navigator.storage.persist()``); True when granted."""
    return bool(await _storage_call("persist"))


class FileDownload:
    """One file streaming into web-llm's store (see ``startDownload`` in static/storage.js).

    ``spec``: ``{url, store, entry, expected, md5}`` (``expected`` -1 when the size is not exact,
    ``md5`` None when the manifest gives no checksum). ``on_progress(n, absolute)`` gets bytes as
    they arrive: ``absolute`` True means "this file now holds n bytes" (what was staged before a
    resume, or the whole file when another tab stored it meanwhile), False means "n more bytes".
    ``on_waiting(True)`` says the file waits for another download of it (another tab, or a twin id
    in this one) to finish, ``on_waiting(False)`` that the wait is over. ``await wait()`` returns
    the file's size once it is committed; ``cancel()`` stops it (waiting or not), keeping what
    arrived staged.
    """

    def __init__(self, spec: dict[str, Any], on_progress: Callable[[int, bool], None],
                 on_waiting: Callable[[bool], None] | None = None) -> None:
        self._spec = spec
        self._on_progress = on_progress
        self._on_waiting = on_waiting or (lambda waiting: None)
        self._handle: Any = None
        self._proxies: list[Any] = []
        self._cancelled = False

    async def wait(self) -> int:
        module = await _storage()
        progress = _core.create_proxy(lambda n, absolute: self._on_progress(int(n), bool(absolute)))
        waiting = _core.create_proxy(lambda flag: self._on_waiting(bool(flag)))
        self._proxies = [progress, waiting]
        try:
            self._handle = module.startDownload(json.dumps(self._spec), progress, waiting)
            if self._cancelled:
                self._handle.cancel()
            return int(await self._handle.wait())
        except _core.JsException as exc:
            raise _storage_error(exc) from None
        finally:
            for proxy in self._proxies:
                proxy.destroy()
            self._proxies = []

    def cancel(self) -> None:
        self._cancelled = True
        if self._handle is not None:
            self._handle.cancel()
