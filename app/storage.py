"""What each model really occupies in the browser, the quota, persistence, and eviction.

Accounting reads the stored entries themselves, in every store the vendored web-llm release can use
(Cache API, IndexedDB, and OPFS from 0.2.84 where the browser has it; where and how each keeps its
entries is the :class:`app.models.layout.StoreLayout`'s to say), and gives each entry to the models
whose files it is. A model's saved download plan (the ``sizes`` store) names its files exactly; an
entry no plan names goes by URL: under a model's base URL (config, tokenizer, tensor manifest,
shards) or its model library. web-llm's list has ids that share one folder and library (``…-MLC``
and ``…-MLC-1k``): such files belong to each of them, are counted once in totals, and a deletion
keeps them while another stored, loaded or loading model needs them.
Last-used times live in the app's own IndexedDB store, for least-recently-used eviction.

    storage = Storage(catalog, layout=StoreLayout.for_version("0.2.86"))
    report = await storage.report()        # report.models["<id>"].bytes, report.orphans, report.shared
    quota = await storage.quota()          # usage, quota, free, persisted
    await storage.evict(2 * 1024**3, keep=["<loaded id>"])   # least recently used first, down to 2 GiB
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from typing import Any
from dataclasses import dataclass, field

from app.errors import UsageError
from app.ffi import storage as bridge
from app.ffi.storage import StorageBridge
from app.models.catalog import Catalog
from app.models.layout import SCOPES, WASM_SCOPE, StoreLayout

USAGE_STORE = "usage"
SIZES_STORE = "sizes"  # each model's download plan (app.models.manager saves it): the files it needs


@dataclass(frozen=True, slots=True)
class StoredFile:
    backend: str
    scope: str
    url: str
    bytes: int


@dataclass(frozen=True, slots=True)
class ModelUsage:
    """A model's stored files (whole ones) and staged bytes of interrupted downloads. ``shared`` are
    those of its files other models own too (e.g. a ``-1k`` twin of the same folder): they are in
    ``files`` and ``bytes``, and counted once in :attr:`StorageReport.total_bytes`."""

    model_id: str
    files: tuple[StoredFile, ...] = ()
    staged_bytes: int = 0
    last_used: float | None = None
    shared: tuple[StoredFile, ...] = ()

    @property
    def bytes(self) -> int:
        return sum(f.bytes for f in self.files)

    @property
    def own_bytes(self) -> int:
        """Bytes of the files no other model owns."""
        return self.bytes - sum(f.bytes for f in self.shared)

    @property
    def backends(self) -> frozenset[str]:
        return frozenset(f.backend for f in self.files)


@dataclass(frozen=True, slots=True)
class StorageReport:
    models: dict[str, ModelUsage]
    orphans: tuple[StoredFile, ...]  # web-llm entries of no catalog model
    shared: dict[StoredFile, tuple[str, ...]] = field(default_factory=dict)  # file -> its owners (2+)
    staged: dict[str, int] = field(default_factory=dict)  # staged bytes per URL some model owns

    @property
    def total_bytes(self) -> int:
        """Every stored file once (however many models own it), staged parts and orphans."""
        files = {f for u in self.models.values() for f in u.files} | set(self.orphans)
        return sum(f.bytes for f in files) + sum(self.staged.values())


@dataclass(frozen=True, slots=True)
class Removal:
    """What deleting one model did: ``freed`` bytes, and the files left in place because other
    models still need them (``kept``: URL -> those models). Freeing nothing while keeping files
    means the model was only forgotten (its files are another model's too)."""

    model_id: str
    freed: int
    kept: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def forgotten(self) -> bool:
        return self.freed == 0 and bool(self.kept)

    @property
    def note(self) -> str:
        needers = sorted({m for by in self.kept.values() for m in by})
        if self.forgotten:
            return (f"{self.model_id} was forgotten, nothing freed: its {len(self.kept)} file(s) are kept "
                    f"for {', '.join(needers)}")
        if self.kept:
            return (f"{self.model_id} deleted, {self.freed} bytes freed; {len(self.kept)} shared file(s) "
                    f"kept for {', '.join(needers)}")
        return f"{self.model_id} deleted, {self.freed} bytes freed"


class Evicted(str):
    """One model :meth:`Storage.evict` removed: equal to (and printed as) its id, so the result still
    reads as a list of ids, with what the removal did (``freed``, ``kept``, ``forgotten``, ``note``)."""

    removal: Removal

    def __new__(cls, removal: Removal) -> Evicted:
        self = super().__new__(cls, removal.model_id)
        self.removal = removal
        return self

    @property
    def freed(self) -> int:
        return self.removal.freed

    @property
    def kept(self) -> dict[str, tuple[str, ...]]:
        return self.removal.kept

    @property
    def forgotten(self) -> bool:
        return self.removal.forgotten

    @property
    def note(self) -> str:
        return self.removal.note


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
        """Catalog models an entry belongs to by its URL alone: under the model's base URL, or its
        model library (a folder or library can be shared by several ids)."""
        if scope == WASM_SCOPE:
            return [m.id for m in self._catalog.all() if m.lib_url == url]
        return [m.id for m in self._catalog.all() if url.startswith(self.layout.base_url(m.model_url))]

    def _owner_of_staged(self, url: str) -> list[str]:
        return [m.id for m in self._catalog.all()
                if url.startswith(self.layout.base_url(m.model_url)) or url == m.lib_url]

    async def claims(self) -> dict[str, frozenset[str]]:
        """The files each catalog model's saved download plan names (plans of this release only)."""
        from app.models.download import DownloadPlan

        out = {}
        for model_id, saved in (await self._api.kv_items(SIZES_STORE)).items():
            if model_id not in self._catalog:
                continue
            try:
                plan = DownloadPlan.from_json(saved)
            except (KeyError, TypeError, ValueError):
                continue
            if plan.release == self.layout.release:
                out[model_id] = frozenset(a.url for a in plan.artifacts)
        return out

    def _owners(self, url: str, claims: dict[str, frozenset[str]], scope: str | None) -> list[str]:
        """Who owns a file: the models whose plan names it; if no plan does, the URL rule."""
        claimed = [m.id for m in self._catalog.all() if url in claims.get(m.id, ())]
        if claimed:
            return claimed
        return self._owner_of_staged(url) if scope is None else self.owners(scope, url)

    def _needs(self, model_id: str, url: str, claims: dict[str, frozenset[str]]) -> bool:
        """Whether a loaded or loading model may read this file: its plan names it, or it is under its
        base URL or is its library (what web-llm itself would fetch, plan or not)."""
        if model_id not in self._catalog:
            return False
        info = self._catalog.get(model_id)
        return url in claims.get(model_id, ()) or url == info.lib_url or \
            url.startswith(self.layout.base_url(info.model_url))

    async def report(self) -> StorageReport:
        return (await self._survey())[0]

    async def _survey(self) -> tuple[StorageReport, dict[str, frozenset[str]]]:
        files, staged, used, claims = await asyncio.gather(self.files(), self._api.staging_list(),
                                                           self.last_used(), self.claims())
        grouped: dict[str, list[StoredFile]] = {}
        shared: dict[StoredFile, tuple[str, ...]] = {}
        orphans = []
        for f in files:
            owners = self._owners(f.url, claims, f.scope)
            if not owners:
                orphans.append(f)
            if len(owners) > 1:
                shared[f] = tuple(owners)
            for owner in owners:
                grouped.setdefault(owner, []).append(f)
        partial: dict[str, int] = {}
        owned_staged: dict[str, int] = {}
        for url, n in staged.items():
            owners = self._owners(url, claims, None)
            if owners:
                owned_staged[url] = int(n)
            for owner in owners:
                partial[owner] = partial.get(owner, 0) + int(n)
        ids = set(grouped) | set(partial)
        models = {i: ModelUsage(i, tuple(grouped.get(i, ())), partial.get(i, 0), used.get(i),
                                tuple(f for f in grouped.get(i, ()) if f in shared)) for i in sorted(ids)}
        return StorageReport(models, tuple(orphans), shared, owned_staged), claims

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

    async def delete(self, model_id: str, *, keep: Iterable[str] = ()) -> int:
        """Remove every stored entry of a model (config, library, tokenizer, tensor manifest, shards,
        staged parts) from every store; returns the bytes freed. See :meth:`remove`."""
        return (await self.remove(model_id, keep=keep)).freed

    async def remove(self, model_id: str, *, keep: Iterable[str] = ()) -> Removal:
        """Delete a model's files except those another model still needs: another stored model that
        owns them (a twin id of the same folder, a model sharing the library), or a model in ``keep``
        (the loaded and loading ones) that would read them. Its last-used time and saved plan are
        forgotten, so it owns nothing afterwards even where every file was kept."""
        self._catalog.get(model_id)
        report, claims = await self._survey()
        usage = report.models.get(model_id, ModelUsage(model_id))
        # Another model keeps shared files only while it has more than a library stored (a model left
        # with nothing but a shared library does not keep that library).
        stored = {m for m, u in report.models.items()
                  if m != model_id and any(f.scope != WASM_SCOPE for f in u.files)}
        kept_ids = [k for k in dict.fromkeys(keep) if k != model_id]

        def needed_by(url: str, owners: tuple[str, ...]) -> tuple[str, ...]:
            by = [m for m in owners if m in stored]
            return tuple(by + [k for k in kept_ids if k not in by and self._needs(k, url, claims)])

        doomed, kept = [], {}
        for f in usage.files:
            by = needed_by(f.url, report.shared.get(f, (model_id,)))
            if by:
                kept[f.url] = by
            else:
                doomed.append(f)
        await self._remove(doomed)
        staged = []
        for url in report.staged:
            owners = tuple(self._owners(url, claims, None))
            if model_id in owners:
                by = needed_by(url, owners)
                if by:
                    kept[url] = by
                else:
                    staged.append(url)
        if staged:
            await self._api.staging_delete(staged)
        await self._api.kv_delete(USAGE_STORE, model_id)
        await self._api.kv_delete(SIZES_STORE, model_id)
        return Removal(model_id, sum(f.bytes for f in doomed) + sum(report.staged[u] for u in staged), kept)

    async def _remove(self, files: Iterable[StoredFile]) -> None:
        by_place: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for f in files:
            by_place.setdefault((f.backend, f.scope), []).append(self.layout.entry(f.backend, f.url))
        await asyncio.gather(*(self._api.store_delete(self.layout.store(b, s), entries)
                               for (b, s), entries in by_place.items()))

    async def evict(self, target_bytes: int, *, keep: Iterable[str] = ()) -> list[Evicted]:
        """Delete models, least recently used first (never used counts as oldest), until the stored
        bytes (each file once) are at most ``target_bytes``. ``keep`` (the loaded and loading models)
        is never deleted, nor any file it needs; a model whose files are all needed elsewhere is only
        forgotten (its :class:`Evicted` says so). Returns the removed ids, in order."""
        if isinstance(target_bytes, bool) or not isinstance(target_bytes, int) or target_bytes < 0:
            raise UsageError(f"target_bytes must be a non-negative int; got {target_bytes!r}")
        keep = tuple(keep)
        report = await self.report()
        total = report.total_bytes
        deleted = []
        for model_id in self.lru_order(report, keep=keep):
            if total <= target_bytes:
                break
            removal = await self.remove(model_id, keep=keep)
            total -= removal.freed
            deleted.append(Evicted(removal))
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
