"""Download a model's files into web-llm's own store without loading it.

Each file goes into the store, scope and key the vendored web-llm release itself reads (a
:class:`app.models.layout.StoreLayout` says which), so after a download web-llm's ``hasModelInCache``
is true and a later load fetches no weights. Files stream in
4 at a time; bytes are counted as they arrive and summed over the parallel fetches into one
:class:`DownloadProgress` with a smoothed rate and ETA. A file is committed only when whole: a cancel,
a dropped connection or a reload leaves its received part staged, and the next download resumes it
with an HTTP Range request guarded by ``If-Range`` (a file changed on the server meanwhile is fetched
again whole, never stitched); whole files already stored are not fetched again. A shard whose tensor
manifest record gives an ``md5sum`` (as TVM's ``dump_tensor_cache`` writes it) is checked against it
as it streams, and a mismatch fails with :class:`ChecksumMismatch` and stores nothing of that file.

Two downloads of one file (two tabs, or twin ids in one tab) never run at once: the second waits
for the first (``static/storage.js`` holds a Web Lock per store and URL), its progress says
``waiting``, and it then finds the file stored and fetches nothing.

    layout = StoreLayout.for_version("0.2.86")
    plan = await make_plan(info, layout=layout)   # sizes, before anything is written
    job = Download(plan, "cache", layout=layout, on_progress=print)
    await job.run()                               # or job.cancel() from elsewhere
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from app.errors import Aborted, AppError, ModelFetchFailed
from app.ffi import storage as bridge
from app.ffi.storage import StorageBridge
from app.models.catalog import ModelInfo
from app.models.layout import SCOPES, StoreLayout

CONCURRENCY = 4
# A file of at least two segments goes in HTTP Range segments of this size, each read by the browser
# straight into a Blob (static/storage.js segmentedFile): progress moves per segment, and since two
# such files go at a time, a cut loses at most two segments. Smaller files stream, their bytes
# counted as they arrive.
SEGMENT_BYTES = 8 << 20
PHASES = ("planning", "downloading", "waiting", "verifying", "done", "cancelled", "failed")
# The saved plan's shape: plans saved by an older app (without checksums) are made again.
PLAN_FORMAT = 2


@dataclass(frozen=True, slots=True)
class Artifact:
    """One file of a model. ``size`` is exact for shards and the JSON files, a server's
    Content-Length for the rest (None when it gave none); only exact sizes are enforced. ``md5``
    is the shard's checksum from the tensor manifest (lowercase hex), when it gives one."""

    url: str
    scope: str
    storetype: str  # "json" | "arraybuffer": how web-llm's IndexedDB store keeps it
    kind: str  # config | manifest | tokenizer | lib | shard
    size: int | None
    exact: bool = False
    md5: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"url": self.url, "scope": self.scope, "storetype": self.storetype, "kind": self.kind,
                "size": self.size, "exact": self.exact, "md5": self.md5}


@dataclass(frozen=True, slots=True)
class DownloadPlan:
    """Every file a model needs, with sizes, known before any byte is stored. ``release`` is the
    web-llm release whose layout named the files (a plan is only good for that release)."""

    model_id: str
    artifacts: tuple[Artifact, ...]
    largest_tensor: int = 0
    release: str = ""
    # The config and manifest as read while planning (not saved with the plan): committed as they
    # are, so they are not fetched twice and the stored manifest is the one the sizes came from.
    texts: dict[str, str] = field(default_factory=dict, compare=False)

    @property
    def total_bytes(self) -> int:
        return sum(a.size or 0 for a in self.artifacts)

    @property
    def shards(self) -> int:
        return sum(a.kind == "shard" for a in self.artifacts)

    def to_json(self) -> dict[str, Any]:
        return {"model_id": self.model_id, "largest_tensor": self.largest_tensor, "release": self.release,
                "format": PLAN_FORMAT, "artifacts": [a.to_json() for a in self.artifacts]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DownloadPlan:
        return cls(data["model_id"], tuple(Artifact(**a) for a in data["artifacts"]),
                   int(data.get("largest_tensor", 0)), str(data.get("release", "")))


async def make_plan(model: ModelInfo, *, layout: StoreLayout = StoreLayout(), api: StorageBridge = bridge) -> DownloadPlan:
    """Read the model's config and tensor manifest (and ask the server the size of the rest) without
    storing anything. Every name, scope and storetype comes from ``layout``."""
    if model.record.get("model_manifest") is not None:
        from app.errors import FeatureUnsupported

        raise FeatureUnsupported(f"{model.id} uses a model package manifest; load it to download it")
    base = layout.base_url(model.model_url)
    config_url, manifest_url = layout.config_url(base), layout.manifest_url(base)
    config_text, manifest_text = await asyncio.gather(api.fetch_text(config_url),
                                                      api.fetch_text(manifest_url))
    try:
        config = json.loads(config_text)
        manifest = json.loads(manifest_text)
        records = manifest["records"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelFetchFailed(f"{model.id}: the config or tensor manifest is not valid JSON ({exc})") from None
    tokenizer = layout.tokenizer_url(base, config.get("tokenizer_files") or [])
    sized = [("tokenizer", tokenizer)] if tokenizer else []
    if layout.lib_is_cached(model.lib_url):
        sized.append(("lib", model.lib_url))
    sizes = await asyncio.gather(*(api.head_size(url) for _, url in sized))

    def artifact(kind: str, url: str, size: int | None, exact: bool) -> Artifact:
        key, scope, storetype = layout.artifact(kind, url)
        return Artifact(key, scope, storetype, kind, size, exact)

    artifacts = [artifact("config", config_url, len(config_text.encode()), True),
                 artifact("manifest", manifest_url, len(manifest_text.encode()), True)]
    artifacts += [artifact(kind, url, size if size >= 0 else None, False)
                  for (kind, url), size in zip(sized, sizes)]
    artifacts += [replace(artifact("shard", layout.shard_url(base, r["dataPath"]), int(r["nbytes"]), True),
                          md5=_md5(r.get("md5sum")))
                  for r in records]
    largest = max((int(t.get("nbytes", 0)) for r in records for t in r.get("records", [])), default=0)
    return DownloadPlan(model.id, tuple(artifacts), largest, layout.release,
                        {config_url: config_text, manifest_url: manifest_text})


def _md5(value: Any) -> str | None:
    """A manifest record's ``md5sum`` if it is one (32 hex digits), lowercased; else None."""
    if isinstance(value, str) and len(value) == 32 and all(c in "0123456789abcdefABCDEF" for c in value):
        return value.lower()
    return None


@dataclass(frozen=True, slots=True)
class DownloadProgress:
    """One progress event. ``rate`` is smoothed bytes/s (None until measurable), ``eta`` seconds.
    ``waiting`` counts files waiting for another download of them (another tab, or a twin id) to
    end; the phase is ``waiting`` while every file in flight waits."""

    model_id: str
    phase: str
    bytes_done: int
    bytes_total: int
    files_done: int
    files_total: int
    rate: float | None = None
    eta: float | None = None
    error: str | None = None
    waiting: int = 0

    @property
    def fraction(self) -> float:
        return 1.0 if self.bytes_total <= 0 else min(1.0, self.bytes_done / self.bytes_total)


class RateMeter:
    """Bytes per second, smoothed exponentially over about ``tau`` seconds of arrivals."""

    def __init__(self, *, tau: float = 2.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._tau = tau
        self._clock = clock
        self._last: tuple[float, int] | None = None
        self.rate: float | None = None

    def update(self, total: int) -> float | None:
        now = self._clock()
        if self._last is None:
            self._last = (now, total)
            return self.rate
        then, before = self._last
        dt = now - then
        if dt <= 0:
            return self.rate
        instant = max(0, total - before) / dt
        weight = 1 - math.exp(-dt / self._tau)
        self.rate = instant if self.rate is None else self.rate + weight * (instant - self.rate)
        self._last = (now, total)
        return self.rate


@dataclass
class _Counts:
    by_url: dict[str, int] = field(default_factory=dict)
    done_files: set[str] = field(default_factory=set)


class Download:
    """One model download. ``run()`` returns the final progress or raises a typed error
    (:class:`Aborted` after ``cancel()``, :class:`ModelFetchFailed` or its :class:`ChecksumMismatch`,
    :class:`QuotaExceeded`)."""

    def __init__(self, plan: DownloadPlan, backend: str, *, layout: StoreLayout = StoreLayout(),
                 stored: dict[str, int] | None = None, staged: dict[str, int] | None = None,
                 on_progress: Callable[[DownloadProgress], None] | None = None, concurrency: int = CONCURRENCY,
                 segment: int = SEGMENT_BYTES, api: StorageBridge = bridge,
                 clock: Callable[[], float] = time.monotonic) -> None:
        layout.check_backend(backend)
        self.plan = plan
        self.backend = backend
        self.layout = layout
        self._api = api
        self._listeners = [on_progress] if on_progress else []
        self._concurrency = concurrency
        self._segment = segment
        self._clock = clock
        self._meter = RateMeter(clock=clock)
        stored = stored or {}
        self._counts = _Counts()
        for a in plan.artifacts:
            if holds(a, stored, backend, layout):
                self._counts.by_url[a.url] = stored[a.url]
                self._counts.done_files.add(a.url)
            elif staged and a.url in staged:
                self._counts.by_url[a.url] = staged[a.url]
        self._files: dict[str, Any] = {}
        self._waiting: set[str] = set()  # files in flight that wait for another download of them
        self.committed: list[Artifact] = []  # files this download wrote into web-llm's store
        self._cancelled = False
        self._failure: AppError | None = None
        self.progress = self._snapshot("planning")

    @property
    def pending(self) -> list[Artifact]:
        return [a for a in self.plan.artifacts if a.url not in self._counts.done_files]

    @property
    def file_bytes(self) -> dict[str, int]:
        """Bytes held so far per file URL (staged or received), for a per-file view."""
        return dict(self._counts.by_url)

    @property
    def remaining_bytes(self) -> int:
        return sum(max(0, (a.size or 0) - self._counts.by_url.get(a.url, 0)) for a in self.pending)

    def subscribe(self, listener: Callable[[DownloadProgress], None]) -> None:
        self._listeners.append(listener)

    def cancel(self) -> None:
        """Stop now; what arrived stays staged for a resume, nothing partial enters web-llm's store."""
        self._cancelled = True
        for file in list(self._files.values()):
            file.cancel()

    def _snapshot(self, phase: str, error: str | None = None) -> DownloadProgress:
        done = sum(self._counts.by_url.values())
        total = max(self.plan.total_bytes, done)
        rate = self._meter.rate
        eta = (total - done) / rate if rate and phase == "downloading" else None
        return DownloadProgress(self.plan.model_id, phase, done, total, len(self._counts.done_files),
                                len(self.plan.artifacts), rate, eta, error, len(self._waiting))

    def _busy_phase(self) -> str:
        """``waiting`` while every file in flight waits for another download of it, else ``downloading``."""
        return "waiting" if self._waiting and self._waiting >= set(self._files) else "downloading"

    def _emit(self, phase: str, error: str | None = None) -> None:
        self.progress = self._snapshot(phase, error)
        for listener in list(self._listeners):
            listener(self.progress)

    def _on_bytes(self, url: str, n: int, absolute: bool) -> None:
        self._counts.by_url[url] = n if absolute else self._counts.by_url.get(url, 0) + n
        self._meter.update(sum(self._counts.by_url.values()))
        self._emit(self._busy_phase())

    def _on_waiting(self, url: str, waiting: bool) -> None:
        if waiting:
            self._waiting.add(url)
        else:
            self._waiting.discard(url)
        self._emit(self._busy_phase())

    async def run(self) -> DownloadProgress:
        queue = list(self.pending)
        self._emit("downloading")
        try:
            if self._cancelled:
                raise Aborted(f"download of {self.plan.model_id} cancelled")
            workers = [asyncio.ensure_future(self._worker(queue)) for _ in range(min(self._concurrency, len(queue)))]
            try:
                await asyncio.gather(*workers)
            except BaseException:
                self.cancel()  # the others stage what they have and stop
                await asyncio.gather(*workers, return_exceptions=True)
                raise
            if self._failure is not None:
                raise self._failure
            self._emit("verifying")
            await self._verify()
        except Aborted as exc:
            self._emit("cancelled", str(exc))
            raise
        except AppError as exc:
            self._emit("failed", str(exc))
            raise
        self._emit("done")
        return self.progress

    async def _worker(self, queue: list[Artifact]) -> None:
        # After one file fails, files already streaming finish (their bytes are good); no new one starts.
        while queue and not self._cancelled and self._failure is None:
            artifact = queue.pop(0)
            text = self.plan.texts.get(artifact.url)
            store = self.layout.store(self.backend, artifact.scope)
            entry = self.layout.entry(self.backend, artifact.url, artifact.storetype)
            if text is not None:
                await self._api.store_put_text(store, entry, text)
                self._committed(artifact, artifact.size or 0)
                continue
            spec = {"url": artifact.url, "store": store, "entry": entry,
                    "expected": artifact.size if artifact.exact else -1, "md5": artifact.md5,
                    "segment": self._segment}
            file = self._api.FileDownload(spec, lambda n, absolute, url=artifact.url: self._on_bytes(url, n, absolute),
                                          lambda waiting, url=artifact.url: self._on_waiting(url, waiting))
            self._files[artifact.url] = file
            try:
                size = await file.wait()
            except Aborted:
                raise
            except AppError as exc:
                self._failure = self._failure or exc
                return
            finally:
                self._files.pop(artifact.url, None)
                self._waiting.discard(artifact.url)
            self._committed(artifact, size)
        if self._cancelled:
            raise Aborted(f"download of {self.plan.model_id} cancelled")

    def _committed(self, artifact: Artifact, size: int) -> None:
        self.committed.append(artifact)
        self._counts.by_url[artifact.url] = size
        self._counts.done_files.add(artifact.url)
        self._emit(self._busy_phase())

    async def discard(self) -> None:
        """Remove what this download wrote (whole files and staged parts): used when the browser
        refused to store more, so a failed download does not keep eating the space left."""
        by_scope: dict[str, list[dict[str, Any]]] = {}
        for artifact in self.committed:
            by_scope.setdefault(artifact.scope, []).append(self.layout.entry(self.backend, artifact.url))
        await asyncio.gather(*(self._api.store_delete(self.layout.store(self.backend, scope), entries)
                               for scope, entries in by_scope.items()))
        await self._api.staging_delete([a.url for a in self.plan.artifacts])
        self.committed.clear()

    async def _verify(self) -> None:
        """Every file is in web-llm's store, exact ones at their exact size (read back from the store)."""
        stored = await stored_sizes(self.backend, self._api, layout=self.layout)
        wrong = [a.url for a in self.plan.artifacts if not holds(a, stored, self.backend, self.layout)]
        if wrong:
            raise ModelFetchFailed(f"{self.plan.model_id}: {len(wrong)} file(s) missing or of the wrong size after "
                                   f"download, e.g. {wrong[0]}")


def holds(artifact: Artifact, stored: dict[str, int], backend: str, layout: StoreLayout = StoreLayout()) -> bool:
    """Whether ``stored`` (from :func:`stored_sizes`) has the whole file. Sizes are compared only
    where the store keeps the served bytes (web-llm's IndexedDB store keeps JSON files parsed)."""
    if artifact.url not in stored:
        return False
    if not artifact.exact or not layout.keeps_served_bytes(backend, artifact.storetype):
        return True
    return stored[artifact.url] == artifact.size


async def stored_sizes(backend: str, api: StorageBridge = bridge, *, layout: StoreLayout = StoreLayout()) -> dict[str, int]:
    """``{url: bytes}`` of every file in web-llm's ``backend`` store, across its three scopes."""
    listings = await asyncio.gather(*(api.store_list(layout.store(backend, scope)) for scope in SCOPES))
    return {e["key"]: int(e["bytes"]) for entries in listings for e in entries}
