"""The state of every model, and the actions on it: download, cancel, load, unload, delete, evict.

    layout = StoreLayout.for_version(versions["@mlc-ai/web-llm"])     # the vendored release's store layout
    manager = ModelManager(catalog, WebLLMBackend(app_config=catalog.app_config(), layout=layout),
                           layout=layout, emit=events.append)
    await manager.download("my-model", on_progress=print)   # refuses with InsufficientStorage first
    (await manager.status("my-model")).state                 # "downloaded"
    await manager.load("my-model")
    await manager.delete("my-model")                         # every file, in every store

States: ``not-downloaded``, ``partial`` (some files or staged bytes), ``downloaded``, ``downloading``,
``loading``, ``loaded``, ``failed`` (``error`` holds the typed error of the last attempt).

Progress is reported to the caller's callback and, as plain-dict events, to ``emit`` (the same sink
:class:`app.middleware.Telemetry` writes to): ``app.model.download``, ``app.model.load`` (a load's
last one has progress 1) or, when a load fails, ``app.model.load.failed`` (``error.type``,
``error.message``), with ``gen_ai.request.model`` naming the model, so one consumer can show
requests and model progress.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from app.errors import (
    Aborted,
    AppError,
    InsufficientStorage,
    InvalidRequest,
    ModelFetchFailed,
    ModelNotLoaded,
    QuotaExceeded,
    UsageError,
)
from app.ffi import storage as bridge
from app.ffi.storage import StorageBridge
from app.models.catalog import Catalog
from app.models.download import (PLAN_FORMAT, SEGMENT_BYTES, Download, DownloadPlan, DownloadProgress, holds, make_plan,
                                 stored_sizes)
from app.models.layout import StoreLayout
from app.models.status import STATES, ModelState, ModelStatus  # noqa: F401 (STATES, ModelState: public here too)
from app.storage import SIZES_STORE, Evicted, Storage  # noqa: F401 (SIZES_STORE: public here)


class ModelManager:
    """See the module docstring. ``backend`` is an :class:`app.backends.webllm.WebLLMBackend`;
    ``layout`` is the store layout of the vendored web-llm release (default: the pinned release),
    ``cache_backend`` the store downloads go to (``cache``, ``indexeddb``, ``opfs``: give the
    backend the same one). ``segment_bytes``: files of at least two such segments download in HTTP
    Range segments (see :data:`app.models.download.SEGMENT_BYTES`); 0 streams every file whole."""

    segment_bytes: int = SEGMENT_BYTES

    def __init__(self, catalog: Catalog, backend: Any, *, layout: StoreLayout | None = None,
                 storage: Storage | None = None, cache_backend: str = "cache",
                 emit: Callable[[dict[str, Any]], None] | None = None, api: StorageBridge = bridge,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.layout = layout or (storage.layout if storage is not None else StoreLayout())
        self.layout.check_backend(cache_backend)  # now, not at the first download
        self.catalog = catalog
        self.backend = backend
        self.storage = storage or Storage(catalog, layout=self.layout, api=api)
        self.cache_backend = cache_backend
        self.persisted: bool | None = None  # what the browser answered to persist(), once asked
        self._emit = emit or (lambda event: None)
        self._api = api
        self._clock = clock
        self._plans: dict[str, DownloadPlan] = {}
        self._downloads: dict[str, asyncio.Task] = {}
        self._jobs: dict[str, Download] = {}
        self._listeners: dict[str, list[Callable[[DownloadProgress], None]]] = {}
        self._loading: dict[str, tuple[float, str]] = {}
        self._load_runs: dict[str, list[asyncio.Future]] = {}  # resolved when each load call ends
        self._errors: dict[str, AppError] = {}
        self._sent_ids: tuple[str, ...] | None = None

    # ------------------------------------------------------------------ sizes

    async def plan(self, model_id: str) -> DownloadPlan:
        """Every file of the model with its size, asked of the network once and then remembered
        (in memory and in the app's IndexedDB), so sizes show without refetching."""
        if model_id in self._plans:
            return self._plans[model_id]
        info = self.catalog.get(model_id)
        plan = await self._saved_plan(model_id)
        if plan is None:
            plan = await make_plan(info, layout=self.layout, api=self._api)
            try:
                await self._api.kv_put(SIZES_STORE, model_id, plan.to_json())
            except QuotaExceeded as exc:  # remembered in memory; asked of the network again next visit
                self._refused(model_id, "sizes", exc)
        self._plans[model_id] = plan
        return plan

    def _refused(self, model_id: str, what: str, exc: Exception) -> None:
        """A bookkeeping write the browser refused (quota): said as an event, never fatal."""
        self._emit({"event": "app.storage.refused", "gen_ai.request.model": model_id, "what": what,
                    "error": str(exc)})

    async def _saved_plan(self, model_id: str) -> DownloadPlan | None:
        """The plan remembered from an earlier visit, if it was made for this web-llm release (its
        files are named by that release's layout)."""
        saved = await self._api.kv_get(SIZES_STORE, model_id)
        if saved is None or saved.get("format") != PLAN_FORMAT:  # none, or saved without checksums
            return None
        plan = DownloadPlan.from_json(saved)
        return plan if plan.release == self.layout.release else None

    async def download_size(self, model_id: str) -> int:
        return (await self.plan(model_id)).total_bytes

    # ------------------------------------------------------------------ status

    async def status(self, model_id: str) -> ModelStatus:
        self.catalog.get(model_id)  # ModelNotFound for an unknown id
        if model_id in self._loading:
            progress, text = self._loading[model_id]
            return ModelStatus(model_id, "loading", load_progress=progress, load_text=text)
        job = self._jobs.get(model_id)
        if job is not None:
            p = job.progress
            return ModelStatus(model_id, "downloading", p.bytes_done, p.bytes_total, p.files_done, p.files_total, p)
        stored = await stored_sizes(self.cache_backend, self._api, layout=self.layout)
        staged = await self._api.staging_list()
        plan = self._plans.get(model_id) or await self._saved_plan(model_id)
        if plan is not None:
            files = [a for a in plan.artifacts if holds(a, stored, self.cache_backend, self.layout)]
            have = sum(stored[a.url] for a in files) + sum(staged.get(a.url, 0) for a in plan.artifacts
                                                            if a not in files)
            state = "downloaded" if len(files) == len(plan.artifacts) else "partial" if have else "not-downloaded"
            status = ModelStatus(model_id, state, have, plan.total_bytes, len(files), len(plan.artifacts))
        else:
            usage = (await self.storage.report()).models.get(model_id)
            have = usage.bytes + usage.staged_bytes if usage else 0
            status = ModelStatus(model_id, "partial" if have else "not-downloaded", have,
                                 files_stored=len(usage.files) if usage else 0)
        if self.backend.loaded == model_id:
            return replace(status, state="loaded")
        if model_id in self._errors:
            return replace(status, state="failed", error=self._errors[model_id])
        return status

    def known_plan(self, model_id: str) -> DownloadPlan | None:
        """The model's files and sizes if already asked (:meth:`plan`), without the network."""
        return self._plans.get(model_id)

    async def persist(self) -> bool:
        """Ask the browser to keep the models' storage (``navigator.storage.persist()``)."""
        self.persisted = await self.storage.persist()
        return self.persisted

    # ------------------------------------------------------------------ download

    async def download(self, model_id: str, on_progress: Callable[[DownloadProgress], None] | None = None
                       ) -> DownloadProgress:
        """Fetch every file of the model into web-llm's store without loading it. Two calls for one
        model share one download. Raises :class:`InsufficientStorage` before writing anything when
        the rest of the download does not fit the quota."""
        self.catalog.get(model_id)
        task = self._downloads.get(model_id)
        if task is None:
            task = asyncio.ensure_future(self._download(model_id))
            self._downloads[model_id] = task
            task.add_done_callback(lambda _t: self._downloads.pop(model_id, None))
        if on_progress is not None:
            self._listen(model_id, on_progress)
        return await asyncio.shield(task)

    def _listen(self, model_id: str, listener: Callable[[DownloadProgress], None]) -> None:
        self._listeners.setdefault(model_id, []).append(listener)
        job = self._jobs.get(model_id)
        if job is not None:
            listener(job.progress)

    async def _download(self, model_id: str) -> DownloadProgress:
        self._errors.pop(model_id, None)
        try:
            plan = await self.plan(model_id)
            stored, staged = await asyncio.gather(
                stored_sizes(self.cache_backend, self._api, layout=self.layout), self._api.staging_list())
            job = Download(plan, self.cache_backend, layout=self.layout, stored=stored, staged=staged,
                           on_progress=lambda p: self._progress(model_id, p), segment=self.segment_bytes,
                           api=self._api, clock=self._clock)
            await self._check_space(model_id, job.remaining_bytes)
            if self.persisted is None:
                self.persisted = await self.storage.persist()
            self._jobs[model_id] = job
            try:
                return await job.run()
            except QuotaExceeded:
                await job.discard()
                raise
        except asyncio.CancelledError:
            raise Aborted(f"download of {model_id} cancelled") from None
        except AppError as exc:
            if not isinstance(exc, Aborted):
                self._errors[model_id] = exc
            raise
        finally:
            self._jobs.pop(model_id, None)
            self._listeners.pop(model_id, None)

    async def _check_space(self, model_id: str, needed: int) -> None:
        quota = await self.storage.quota()
        if quota.quota <= 0 or needed <= quota.free:  # a browser that reports no quota gets no refusal
            return
        from app.runtime import format_bytes

        report = await self.storage.report()
        keep = [m for m in (model_id, self.backend.loaded) if m]
        kept = set(keep)

        def frees(model: str) -> bool:  # a twin of a kept model shares all its files: deleting it frees nothing
            return any(not kept & set(report.shared.get(f, ())) for f in report.models[model].files)

        evictable = tuple(m for m in self.storage.lru_order(report, keep=keep) if frees(m))
        hint = f"; deleting {', '.join(evictable[:3])} would free space" if evictable else ""
        raise InsufficientStorage(
            f"{model_id} needs {format_bytes(needed)} more, and this site may store only "
            f"{format_bytes(quota.free)} more{hint}", needed=needed, available=quota.free, evictable=evictable)

    def _progress(self, model_id: str, progress: DownloadProgress) -> None:
        for listener in list(self._listeners.get(model_id, ())):
            listener(progress)
        self._emit({"event": "app.model.download", "gen_ai.request.model": model_id,
                    "phase": progress.phase, "bytes_done": progress.bytes_done,
                    "bytes_total": progress.bytes_total, "files_done": progress.files_done,
                    "files_total": progress.files_total, "rate_bytes_per_s": progress.rate,
                    "eta_s": progress.eta})

    def cancel(self, model_id: str) -> bool:
        """Stop a running download (what arrived stays staged for a resume). False if none ran."""
        job = self._jobs.get(model_id)
        if job is not None:
            job.cancel()
            return True
        task = self._downloads.get(model_id)
        if task is not None:  # still planning: nothing written yet
            task.cancel()
            return True
        return False

    # ------------------------------------------------------------------ load / unload / delete

    async def load(self, model_id: str, on_progress: Callable[[dict[str, Any]], None] | None = None) -> None:
        """Load into web-llm (downloading what is missing, the way web-llm does). Single-flight."""
        self.catalog.get(model_id)
        ids = tuple(m.id for m in self.catalog.all())
        if ids != self._sent_ids:  # a user model was added or removed since the engine last heard
            await self.backend.set_app_config(self.catalog.app_config())
            self._sent_ids = ids

        reported = [0.0]

        def report(raw: dict[str, Any]) -> None:
            progress, text = float(raw.get("progress") or 0.0), str(raw.get("text") or "")
            reported[0] = progress
            self._loading[model_id] = (progress, text)
            self._emit({"event": "app.model.load", "gen_ai.request.model": model_id,
                        "progress": progress, "text": text})
            if on_progress is not None:
                on_progress(raw)

        self._errors.pop(model_id, None)
        was_loaded = self.backend.loaded == model_id
        if not was_loaded and model_id not in self._load_runs:
            await self._space_for_load(model_id)
        self._loading.setdefault(model_id, (0.0, ""))
        run = asyncio.get_running_loop().create_future()  # what a delete of these files waits for
        self._load_runs.setdefault(model_id, []).append(run)
        try:
            try:
                await self.backend.load(model_id, on_progress=report)
                if not was_loaded and reported[0] < 1.0:  # the events of a load end with 1 (or a failure)
                    report({"progress": 1.0, "text": "Loaded"})
            except AppError as exc:
                self._errors[model_id] = exc
                self._emit({"event": "app.model.load.failed", "gen_ai.request.model": model_id,
                            "error.type": type(exc).__name__, "error.message": str(exc)})
                raise
            finally:
                if len(self._load_runs[model_id]) == 1:
                    self._loading.pop(model_id, None)
            try:
                await self.storage.touch(model_id)
            except QuotaExceeded as exc:  # the model is loaded; only its "last used" mark is not kept
                self._refused(model_id, "last used", exc)
        finally:
            self._load_runs[model_id].remove(run)
            if not self._load_runs[model_id]:
                del self._load_runs[model_id]
            run.set_result(None)

    async def _space_for_load(self, model_id: str) -> None:
        """Before a load downloads what is missing (the chat's load, an embedded chat's too, not only
        the Models panel's Download): refuse with :class:`InsufficientStorage` what cannot fit, before
        one byte is fetched. When the sizes cannot be known (no network, a model package manifest),
        the load goes ahead and web-llm says what is wrong."""
        try:
            plan = await self.plan(model_id)
            stored, staged = await asyncio.gather(
                stored_sizes(self.cache_backend, self._api, layout=self.layout), self._api.staging_list())
        except AppError:
            return
        missing = Download(plan, self.cache_backend, layout=self.layout, stored=stored, staged=staged,
                           api=self._api).remaining_bytes
        if missing:
            try:
                await self._check_space(model_id, missing)
            except InsufficientStorage as exc:
                self._errors[model_id] = exc
                raise

    async def add_model(self, record: dict[str, Any], gpu: Any = None) -> tuple[Any, DownloadPlan]:
        """Add a user model after checking it for real: its config and tensor manifest are read (the
        host is reachable and lets this page read it: CORS), its size known, and, given the page's
        ``gpu`` report, that it fits this GPU. Nothing is stored when a check fails."""
        from app.models.catalog import ModelInfo, validate_record

        record = validate_record(record)
        if record["model_id"] in self.catalog:
            raise InvalidRequest(f"{record['model_id']!r} is already in the list; pick another id", param="model_id")
        info = ModelInfo.from_record(record, "user")
        try:
            plan = await make_plan(info, layout=self.layout, api=self._api)
        except ModelFetchFailed as exc:
            raise ModelFetchFailed(f"could not read {info.id}'s files at {info.base_url}: {exc} (is the URL "
                                   "right, and does its host let this page read it (CORS)?)",
                                   status=exc.status) from None
        if gpu is not None:
            fit = self.catalog.fit(info, gpu, largest_tensor=plan.largest_tensor)
            if not fit.ok:
                raise InvalidRequest(f"{info.id} cannot run here: {'; '.join(fit.reasons)}", param="model")
        info = await self.catalog.add(record)
        self._plans[info.id] = plan
        try:
            await self._api.kv_put(SIZES_STORE, info.id, plan.to_json())
        except QuotaExceeded as exc:
            self._refused(info.id, "sizes", exc)
        return info, plan

    async def remove_model(self, model_id: str) -> int:
        """Forget a user model, deleting its files first (those other models need stay). Bytes freed."""
        info = self.catalog.get(model_id)
        if info.source != "user":
            raise UsageError(f"{model_id!r} comes with web-llm; only your own models can be removed")
        freed = await self.delete(model_id)
        await self.catalog.remove(model_id)
        self._plans.pop(model_id, None)
        return freed

    async def unload(self) -> None:
        if self.backend.loaded is None:
            raise ModelNotLoaded("no model is loaded")
        await self.backend.unload()

    def in_use(self) -> list[str]:
        """Models whose files must stay: the loaded one, those loading, those downloading."""
        ids = [self.backend.loaded, *self._loading, *self._load_runs, *self._downloads, *self._jobs]
        return [m for m in dict.fromkeys(ids) if m]

    async def delete(self, model_id: str) -> int:
        """Unload it if loaded, stop its download, and remove every file it has in every store
        (web-llm's own delete leaves the tensor manifest behind). A load of the same files (this id,
        or a twin id of the same folder) is waited for first, so nothing is removed while web-llm
        reads it; files another stored, loaded or loading model needs are kept. Returns the bytes freed."""
        info = self.catalog.get(model_id)
        if self.cancel(model_id):
            task = self._downloads.get(model_id)
            if task is not None:
                await asyncio.gather(task, return_exceptions=True)
        base = self.layout.base_url(info.model_url)
        reading = [run for m, runs in self._load_runs.items() for run in runs
                   if m == model_id or (m in self.catalog and
                                        self.layout.base_url(self.catalog.get(m).model_url) == base)]
        if reading:
            await asyncio.wait(reading)
        if self.backend.loaded == model_id:
            await self.backend.unload()
        self._errors.pop(model_id, None)
        self._plans.pop(model_id, None)
        return await self.storage.delete(model_id, keep=[m for m in self.in_use() if m != model_id])

    async def evict(self, target_bytes: int) -> list[Evicted]:
        """Delete least recently used models until at most ``target_bytes`` are stored, never the
        loaded, loading or downloading ones nor any file they need (a twin id of the loaded model is
        only forgotten: see :class:`app.storage.Evicted`)."""
        evicted = await self.storage.evict(target_bytes, keep=self.in_use())
        for model in evicted:
            self._plans.pop(model, None)
        return evicted
