"""A fake of the storage bridge ``app.ffi.storage`` (its :class:`StorageBridge` Protocol: what
static/storage.js does in the browser), in memory, plus ``webllm_exports`` for ``Catalog.load``.
tests/unit/test_bridge_contract.py checks it has the bridge's shape.

It follows the real functions' shapes: ``store_list(store)`` gives ``[{"key", "bytes"}]`` of the
store a spec from app.models.layout names (``stores`` is keyed ``(type, name)``: ``("cache",
"webllm/model")``, ``("opfs", "tvmjs-opfs-store/webllm/model")``), ``FileDownload(spec,
on_progress)`` streams a served file in chunks (reporting ``(n, absolute)``), stages what arrived
when cancelled or cut, resumes from the staged offset, and commits only a whole file. ``files`` is
the "server": url -> bytes; ``cut`` makes one fetch of a url fail after n bytes; ``gate`` pauses a
url's stream until the event is set; ``busy`` makes a url's download wait (``on_waiting(True)``)
until the event is set, as for another tab's Web Lock, and then find the file stored if it is. A
spec's ``md5`` is checked against the served bytes (ChecksumMismatch, nothing kept).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections import Counter
from typing import Any

from app.errors import Aborted, ChecksumMismatch, ModelFetchFailed, QuotaExceeded

CHUNK = 1000


class FakeStoreApi:
    def __init__(self, files: dict[str, bytes], *, quota: int = 10**12, prebuilt: list[dict] | None = None) -> None:
        self.files = files
        self.quota = quota
        self.prebuilt = prebuilt or []
        self.stores: dict[tuple[str, str], dict[str, int]] = {}
        self.staged: dict[str, int] = {}
        self.kv: dict[str, dict[str, Any]] = {}
        self.gets: Counter[str] = Counter()
        self.heads: Counter[str] = Counter()
        self.sent: Counter[str] = Counter()
        self.cut: dict[str, int] = {}
        self.gate: dict[str, asyncio.Event] = {}
        self.busy: dict[str, asyncio.Event] = {}
        self.persist_answer = True
        self.put_texts: list[tuple[dict, dict]] = []  # (store, entry) of every store_put_text
        self.specs: list[dict[str, Any]] = []  # every FileDownload spec

    # ------------------------------------------------------------------ web-llm's stores
    @staticmethod
    def place(store: dict[str, Any]) -> tuple[str, str]:
        """A store spec's key in ``stores``."""
        name = store.get("name") or store.get("database") or "/".join(store.get("directory", ()))
        return store["type"], name

    async def store_list(self, store: dict[str, Any]) -> list[dict[str, Any]]:
        return [{"key": u, "bytes": n} for u, n in self.stores.get(self.place(store), {}).items()]

    async def store_delete(self, store: dict[str, Any], entries: list[dict[str, Any]]) -> None:
        for entry in entries:
            self.stores.get(self.place(store), {}).pop(entry["key"], None)

    async def store_put_text(self, store: dict[str, Any], entry: dict[str, Any], text: str) -> None:
        self.put_texts.append((store, entry))
        self._commit(self.place(store), entry["key"], len(text.encode()))

    def _commit(self, place: tuple[str, str], url: str, n: int) -> None:
        if self.usage() + n > self.quota:
            raise QuotaExceeded("the browser refused to store more")
        self.stores.setdefault(place, {})[url] = n

    def usage(self) -> int:
        return sum(sum(s.values()) for s in self.stores.values()) + sum(self.staged.values())

    async def staging_list(self) -> dict[str, int]:
        return dict(self.staged)

    async def staging_delete(self, urls: list[str]) -> None:
        for url in urls:
            self.staged.pop(url, None)

    # ------------------------------------------------------------------ network
    async def fetch_text(self, url: str) -> str:
        self.gets[url] += 1
        if url not in self.files:
            raise ModelFetchFailed(f"GET {url} answered 404", status=404)
        self.sent[url] += len(self.files[url])
        return self.files[url].decode()

    async def head_size(self, url: str) -> int:
        self.heads[url] += 1
        if url not in self.files:
            raise ModelFetchFailed(f"HEAD {url} answered 404", status=404)
        return len(self.files[url])

    def FileDownload(self, spec: dict[str, Any], on_progress, on_waiting=None) -> FakeFileDownload:
        self.specs.append(spec)
        return FakeFileDownload(self, spec, on_progress, on_waiting)

    async def storage_estimate(self) -> dict[str, Any]:
        return {"usage": self.usage(), "quota": self.quota, "persisted": False}

    async def storage_persist(self) -> bool:
        return self.persist_answer

    # ------------------------------------------------------------------ app key-value stores
    async def kv_get(self, store: str, key: str) -> Any:
        return json.loads(json.dumps(self.kv.get(store, {}).get(key)))

    async def kv_put(self, store: str, key: str, value: Any) -> None:
        self.kv.setdefault(store, {})[key] = json.loads(json.dumps(value))

    async def kv_delete(self, store: str, key: str) -> None:
        self.kv.get(store, {}).pop(key, None)

    async def kv_items(self, store: str) -> dict[str, Any]:
        return json.loads(json.dumps(self.kv.get(store, {})))

    async def kv_write(self, store: str, puts: dict[str, Any], deletes: list[str]) -> None:
        entries = self.kv.setdefault(store, {})
        for key in deletes:
            entries.pop(key, None)
        entries.update(json.loads(json.dumps(puts)))

    async def webllm_exports(self, module_url: str, versions_url: str = "static/vendor/VERSIONS.json") -> dict[str, Any]:
        return {"version": "0.2.86", "prebuiltAppConfig": {"model_list": self.prebuilt},
                "functionCallingModelIds": []}


class FakeFileDownload:
    def __init__(self, api: FakeStoreApi, spec: dict[str, Any], on_progress, on_waiting=None) -> None:
        self.api, self.spec, self.on_progress = api, spec, on_progress
        self.on_waiting = on_waiting or (lambda waiting: None)
        self.cancelled = False
        self._woken = asyncio.Event()

    def cancel(self) -> None:
        self.cancelled = True
        self._woken.set()

    async def wait(self) -> int:
        api, url = self.api, self.spec["url"]
        busy = api.busy.get(url)
        if busy is not None and not busy.is_set():
            self.on_waiting(True)
            woken = asyncio.ensure_future(self._woken.wait())
            await asyncio.wait([woken, asyncio.ensure_future(busy.wait())], return_when=asyncio.FIRST_COMPLETED)
            if self.cancelled:
                raise Aborted(f"download of {url} cancelled")
            self.on_waiting(False)
        stored = api.stores.get(api.place(self.spec["store"]), {})
        if url in stored:  # stored meanwhile by the download it waited for
            self.on_progress(stored[url], True)
            return stored[url]
        api.gets[url] += 1
        data = api.files.get(url)
        if data is None:
            raise ModelFetchFailed(f"GET {url} answered 404", status=404)
        got = api.staged.get(url, 0)
        self.on_progress(got, True)
        cut = api.cut.pop(url, None)
        while got < len(data):
            gate = api.gate.get(url)
            if gate is not None and not gate.is_set():
                await gate.wait()
            await asyncio.sleep(0)
            if self.cancelled:
                api.staged[url] = got
                raise Aborted(f"download of {url} cancelled")
            if cut is not None and got >= cut:
                api.staged[url] = got
                raise ModelFetchFailed(f"the connection dropped while fetching {url}")
            n = min(CHUNK, len(data) - got, *( [cut - got] if cut is not None else []))
            got += n
            api.sent[url] += n
            self.on_progress(n, False)
        api.staged.pop(url, None)
        digest = self.spec.get("md5")
        if digest and hashlib.md5(data).hexdigest() != digest:
            raise ChecksumMismatch(f"{url}: the downloaded bytes have md5 {hashlib.md5(data).hexdigest()}, "
                                   f"the model's manifest says {digest}; nothing of this file was stored")
        api._commit(api.place(self.spec["store"]), self.spec["entry"]["key"], got)
        return got
