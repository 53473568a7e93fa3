"""What each model really occupies in the browser, the quota, persistence, and eviction.

Accounting reads the stored entries themselves, in every store the vendored web-llm release can use
(Cache API, IndexedDB, and OPFS from 0.2.84 where the browser has it; where and how each keeps its
entries is the :class:`app.models.layout.StoreLayout`'s to say), and gives each entry to the model
whose files it is:
entries under a model's base URL (config, tokenizer, tensor manifest, shards) and its model library.
Last-used times live in the app's own IndexedDB store, for least-recently-used eviction.

    storage = Storage(catalog, layout=StoreLayout.for_version("0.2.86"))
    report = await storage.report()        # report.models["<id>"].bytes, report.orphans
    quota = await storage.quota()          # usage, quota, free, persisted
    await storage.evict(2 * 1024**3)       # delete least recently used models down to 2 GiB
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from typing import Any
from dataclasses import dataclass

from app.errors import UsageError
from app.ffi import storage as bridge
from app.ffi.storage import StorageBridge
from app.models.catalog import Catalog
from app.models.layout import SCOPES, WASM_SCOPE, StoreLayout

USAGE_STORE = "usage"


@dataclass(frozen=True, slots=True)
class StoredFile:
    backend: str
    scope: str
    url: str
    bytes: int


@dataclass(frozen=True, slots=True)
class ModelUsage:
    """A model's stored files (whole ones) and staged bytes of interrupted downloads."""

    model_id: str
    files: tuple[StoredFile, ...] = ()
    staged_bytes: int = 0
    last_used: float | None = None

    @property
    def bytes(self) -> int:
        return sum(f.bytes for f in self.files)

    @property
    def backends(self) -> frozenset[str]:
        return frozenset(f.backend for f in self.files)


@dataclass(frozen=True, slots=True)
class StorageReport:
    models: dict[str, ModelUsage]
    orphans: tuple[StoredFile, ...]  # web-llm entries of no catalog model

    @property
    def total_bytes(self) -> int:
        return sum(u.bytes + u.staged_bytes for u in self.models.values()) + sum(f.bytes for f in self.orphans)


@dataclass(frozen=True, slots=True)
class Quota:
    """``navigator.storage.estimate()`` for this origin, and whether storage is persistent."""

    usage: int
    quota: int
    persisted: bool

    @property
    def free(self) -> int:
        return max(0, self.quota - self.usage)


class Storage:
    """See the module docstring. ``api`` is :mod:`app.ffi.storage` (a fake of it under CPython);
    ``backends`` defaults to every store ``layout``'s release can use."""

    def __init__(self, catalog: Catalog, *, layout: StoreLayout = StoreLayout(), api: StorageBridge = bridge,
                 clock: Callable[[], float] = time.time, backends: Iterable[str] | None = None) -> None:
        self._catalog = catalog
        self.layout = layout
        self._api = api
        self._clock = clock
        self._backends = tuple(layout.backends if backends is None else backends)
        for backend in self._backends:
            layout.check_backend(backend)

    # ------------------------------------------------------------------ reading

    async def files(self) -> list[StoredFile]:
        """Every entry in web-llm's scopes, in every store."""
        pairs = [(b, s) for b in self._backends for s in SCOPES]
        listings = await asyncio.gather(*(self._api.store_list(self.layout.store(b, s)) for b, s in pairs))
        return [StoredFile(b, s, e["key"], int(e["bytes"])) for (b, s), entries in zip(pairs, listings)
                for e in entries]

    def owners(self, scope: str, url: str) -> list[str]:
        """Catalog models an entry belongs to (a model library can be shared by several)."""
        if scope == WASM_SCOPE:
            return [m.id for m in self._catalog.all() if m.lib_url == url]
        return [m.id for m in self._catalog.all() if url.startswith(self.layout.base_url(m.model_url))]

    def _owner_of_staged(self, url: str) -> list[str]:
        return [m.id for m in self._catalog.all()
                if url.startswith(self.layout.base_url(m.model_url)) or url == m.lib_url]

    async def report(self) -> StorageReport:
        files, staged, used = await asyncio.gather(self.files(), self._api.staging_list(), self.last_used())
        grouped: dict[str, list[StoredFile]] = {}
        orphans = []
        for f in files:
            owners = self.owners(f.scope, f.url)
            if not owners:
                orphans.append(f)
            for owner in owners:
                grouped.setdefault(owner, []).append(f)
        partial: dict[str, int] = {}
        for url, n in staged.items():
            for owner in self._owner_of_staged(url):
                partial[owner] = partial.get(owner, 0) + int(n)
        ids = set(grouped) | set(partial)
        models = {i: ModelUsage(i, tuple(grouped.get(i, ())), partial.get(i, 0), used.get(i)) for i in sorted(ids)}
        return StorageReport(models, tuple(orphans))

    async def quota(self) -> Quota:
        raw = await self._api.storage_estimate()
        return Quota(int(raw["usage"]), int(raw["quota"]), bool(raw["persisted"]))

    async def persist(self) -> bool:
        """Ask the browser not to evict this origin's storage under pressure; True when granted."""
        return await self._api.storage_persist()

    # ------------------------------------------------------------------ last used

    async def touch(self, model_id: str) -> None:
        await self._api.kv_put(USAGE_STORE, model_id, self._clock())

    async def last_used(self) -> dict[str, float]:
        return {k: float(v) for k, v in (await self._api.kv_items(USAGE_STORE)).items()}

    # ------------------------------------------------------------------ deleting

    async def delete(self, model_id: str) -> int:
        """Remove every stored entry of a model (config, library, tokenizer, tensor manifest, shards,
        staged parts) from every store; returns the bytes freed. A library another stored model
        still uses is kept."""
        model = self._catalog.get(model_id)
        report = await self.report()
        usage = report.models.get(model_id, ModelUsage(model_id))
        others_with_lib = [m for m, u in report.models.items() if m != model_id and u.files
                           and self._catalog.get(m).lib_url == model.lib_url
                           and any(f.scope != WASM_SCOPE for f in u.files)]
        doomed = [f for f in usage.files if not (f.scope == WASM_SCOPE and others_with_lib)]
        await self._remove(doomed)
        staged = [url for url in await self._api.staging_list() if model_id in self._owner_of_staged(url)]
        if staged:
            await self._api.staging_delete(staged)
        await self._api.kv_delete(USAGE_STORE, model_id)
        return sum(f.bytes for f in doomed) + usage.staged_bytes

    async def _remove(self, files: Iterable[StoredFile]) -> None:
        by_place: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for f in files:
            by_place.setdefault((f.backend, f.scope), []).append(self.layout.entry(f.backend, f.url))
        await asyncio.gather(*(self._api.store_delete(self.layout.store(b, s), entries)
                               for (b, s), entries in by_place.items()))

    async def evict(self, target_bytes: int, *, keep: Iterable[str] = ()) -> list[str]:
        """Delete models, least recently used first (never used counts as oldest), until the models'
        stored bytes are at most ``target_bytes``. ``keep`` (e.g. the loaded model) is never deleted.
        Returns the deleted ids, in order."""
        if isinstance(target_bytes, bool) or not isinstance(target_bytes, int) or target_bytes < 0:
            raise UsageError(f"target_bytes must be a non-negative int; got {target_bytes!r}")
        report = await self.report()
        total = report.total_bytes
        deleted = []
        for model_id in self.lru_order(report, keep=keep):
            if total <= target_bytes:
                break
            total -= await self.delete(model_id)
            deleted.append(model_id)
        return deleted

    @staticmethod
    def lru_order(report: StorageReport, *, keep: Iterable[str] = ()) -> list[str]:
        """Stored models, least recently used first (never used counts as oldest), minus ``keep``."""
        kept = set(keep)
        order = sorted(report.models.values(), key=lambda u: (u.last_used or 0.0, u.model_id))
        return [u.model_id for u in order if u.model_id not in kept]

    async def clear(self) -> int:
        """Remove every model file web-llm stored, in every store, and all staged parts."""
        files = await self.files()
        await self._remove(files)
        staged = await self._api.staging_list()
        if staged:
            await self._api.staging_delete(list(staged))
        return sum(f.bytes for f in files) + sum(staged.values())
