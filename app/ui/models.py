"""The model picker's state and intents, over :class:`app.models.manager.ModelManager` (plain Python).

    state = ModelsState(session, await session.models())   # the session's manager; nothing built here
    state.query.set("llama"); state.sort.set("vram")      # state.visible recomputes
    await state.select("synth-a")     # remembers the choice, sizes the model once (network), refreshes
    await state.download("synth-a")  # progress lands in state.status("synth-a"), one Signal per model
    state.cancel("synth-a")           # what arrived stays staged: the status turns "partial" (Resume)
    await state.use("synth-a")        # the session loads it (progress in the same Signal); the chat uses it

Each model's status is its own Signal, so a progress event re-renders that model's row and the
progress block only. Sizes are asked of the network only for a model the user selects (or that is
stored), never for the whole catalog. Errors land in ``notice``; :class:`InsufficientStorage` also in
``shortfall``, whose ``evictable`` models the panel offers to delete.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.errors import Aborted, AppError, InsufficientStorage
from app.models.status import ModelStatus
from app.ui.store import Computed, Signal, batch

SORTS = ("name", "vram", "context")
BUSY = ("downloading", "loading")


@dataclass(frozen=True, slots=True)
class StorageView:
    """What the storage panel shows: the quota and each stored model, least recently used first.

    ``usage`` is the browser's own figure (``navigator.storage.estimate()``), which Chromium does not
    lower when Cache API entries are deleted (only when it compacts later); so the bar shows what the
    models measurably occupy (``model_bytes``, read from the stores) against the quota. Twin ids of one
    model folder each list the shared files; ``total`` (the storage report's) counts them once."""

    usage: int
    quota: int
    persisted: bool
    models: tuple[tuple[str, int, float | None], ...]  # (id, bytes incl. staged, last used)
    orphan_bytes: int = 0
    total: int | None = None  # every stored file once, staged parts and orphans included

    @property
    def model_bytes(self) -> int:
        if self.total is not None:
            return self.total
        return sum(n for _i, n, _u in self.models) + self.orphan_bytes

    @property
    def fraction(self) -> float:
        return 0.0 if self.quota <= 0 else min(1.0, self.model_bytes / self.quota)


class ModelsState:
    """See the module docstring. ``session`` is the page's :class:`app.session.Session`, ``manager`` its
    model manager."""

    def __init__(self, session: Any, manager: Any) -> None:
        self.session = session
        self.manager = manager
        self.catalog = manager.catalog
        self.query: Signal[str] = Signal("")
        self.sort: Signal[str] = Signal("name")
        self.revision: Signal[int] = Signal(0)  # bumped when the catalog itself changes
        self.selected: Signal[str | None] = Signal(session.model.peek())
        self.sizes: Signal[dict[str, int]] = Signal({})
        self.storage: Signal[StorageView | None] = Signal(None)
        self.notice: Signal[str] = Signal("")
        self.shortfall: Signal[InsufficientStorage | None] = Signal(None)
        self.visible = Computed(self._search)
        self.benchmarking: Signal[str | None] = Signal(None)  # the model being benchmarked
        self.bench_said: Signal[str] = Signal("")
        # This device's benchmark results, fastest decode first (app.benchmark.table rows).
        self.bench_rows = Computed(self._bench_rows)
        self._statuses: dict[str, Signal[ModelStatus]] = {}
        # A load started anywhere (the chat's first send, this panel) reports through the session.
        self.stop_listening = session.on_event(self._on_event)

    def _on_event(self, event: dict[str, Any]) -> None:
        if event.get("event") != "app.model.load":
            return
        model_id = str(event.get("gen_ai.request.model"))
        sig = self.status(model_id)
        progress = float(event.get("progress") or 0.0)
        with batch():
            # web-llm holds one model: another one loading means the one before is not loaded now.
            for other, other_sig in self._statuses.items():
                s = other_sig.peek()
                if other != model_id and s.state == "loaded":
                    other_sig.set(ModelStatus(other, "downloaded", s.bytes_stored, s.bytes_total,
                                              s.files_stored, s.files_total))
            # A load's last report (progress 1) is its end, whoever started it (the chat, the switcher).
            state = "loaded" if progress >= 1.0 else "loading"
            sig.set(ModelStatus(model_id, state, sig.peek().bytes_stored, sig.peek().bytes_total,
                                load_progress=None if state == "loaded" else progress,
                                load_text="" if state == "loaded" else str(event.get("text") or "")))

    def _bench_rows(self) -> list[dict[str, Any]]:
        from app.benchmark import table

        device = self.session.device()
        return table([r for (d, _m), r in self.session.benchmarks.get().items() if d == device])

    async def benchmark(self, model_id: str) -> Any:
        """Load ``model_id`` and measure it (session.benchmark); the result joins the table, a
        refusal or failure is said. None when it did not run."""
        self.catalog.get(model_id)
        if self.benchmarking.peek() is not None:
            self.bench_said.set(f"Wait: {self.benchmarking.peek()} is being measured.")
            return None
        with batch():
            self.benchmarking.set(model_id)
            self.bench_said.set(f"Measuring {model_id}: loading it, then two prompts…")
        try:
            result = await self.session.benchmark(model_id)
        except AppError as exc:
            self.bench_said.set(f"{model_id} was not measured: {type(exc).__name__}: {exc}")
            return None
        finally:
            self.benchmarking.set(None)
            await self.refresh(model_id, *self._statuses)
        decode = f"{result.decode_tps:g} tokens/s" if result.decode_tps is not None else "no decode rate"
        self.bench_said.set(f"{model_id}: {decode} to write, first token after {result.ttft_ms:g} ms.")
        return result

    def _search(self) -> list[Any]:
        self.revision.get()
        return self.catalog.search(self.query.get(), sort=self.sort.get())

    # ------------------------------------------------------------------ reading

    def status(self, model_id: str) -> Signal[ModelStatus]:
        """The model's status Signal (created on first ask, "not-downloaded" until refreshed)."""
        sig = self._statuses.get(model_id)
        if sig is None:
            sig = self._statuses[model_id] = Signal(ModelStatus(model_id, "not-downloaded"))
        return sig

    def fit(self, info: Any) -> Any:
        """catalog.fit against the page's GPU report (None until probed)."""
        gpu = self.session.gpu.get()
        if gpu is None:
            return None
        plan = self.manager.known_plan(info.id)
        return self.catalog.fit(info, gpu, largest_tensor=plan.largest_tensor if plan else None)

    async def refresh(self, *ids: str) -> None:
        """Re-read storage (quota, per-model bytes) and the status of stored, selected and given models."""
        report, quota = await self.manager.storage.report(), await self.manager.storage.quota()
        used = sorted(report.models.values(), key=lambda u: (u.last_used or 0.0, u.model_id))
        view = StorageView(quota.usage, quota.quota, quota.persisted or bool(self.manager.persisted),
                           tuple((u.model_id, u.bytes + u.staged_bytes, u.last_used) for u in used),
                           sum(f.bytes for f in report.orphans), report.total_bytes)
        wanted = {*ids, *report.models, *(i for i in (self.selected.peek(), self.manager.backend.loaded) if i)}
        wanted |= {i for i, s in self._statuses.items() if s.peek().state != "not-downloaded"}
        statuses = {}
        for model_id in wanted:
            if model_id in self.catalog:
                statuses[model_id] = await self.manager.status(model_id)
        with batch():
            self.storage.set(view)
            for model_id, status in statuses.items():
                self.status(model_id).set(status)

    # ------------------------------------------------------------------ intents

    async def select(self, model_id: str) -> None:
        """Show this model's details; its download size is asked of the network once."""
        self.catalog.get(model_id)
        self.selected.set(model_id)
        await self.refresh(model_id)
        await self._size(model_id)

    async def _size(self, model_id: str) -> None:
        if model_id in self.sizes.peek():
            return
        try:
            size = await self.manager.download_size(model_id)
        except AppError as exc:  # offline, or the host refuses: the size stays unknown
            self.notice.set(f"Could not size {model_id}: {exc}")
            return
        self.sizes.update(lambda known: {**known, model_id: size})
        self.revision.update(lambda n: n + 1)  # the plan knows the largest tensor now: fit may change
        if self.status(model_id).peek().state not in BUSY:
            self.status(model_id).set(await self.manager.status(model_id))

    async def download(self, model_id: str) -> bool:
        """Download (or resume) the model; True when it is complete."""
        self.notice.set("")
        self.shortfall.set(None)
        sig = self.status(model_id)

        def progress(p: Any) -> None:
            if p.phase in ("done", "cancelled", "failed"):
                return  # the refresh below says what is stored
            sig.set(ModelStatus(model_id, "downloading", p.bytes_done, p.bytes_total, p.files_done,
                                p.files_total, p))

        sig.set(ModelStatus(model_id, "downloading", sig.peek().bytes_stored, sig.peek().bytes_total))
        try:
            await self.manager.download(model_id, on_progress=progress)
            return True
        except Aborted:
            return False
        except InsufficientStorage as exc:
            self.shortfall.set(exc)
            self.notice.set(str(exc))
            return False
        except AppError as exc:
            self.notice.set(f"Download of {model_id} failed: {exc}")
            return False
        finally:
            await self.refresh(model_id)
            await self._size(model_id)

    def cancel(self, model_id: str) -> bool:
        return self.manager.cancel(model_id)

    async def use(self, model_id: str) -> bool:
        """Chat with this model: the session makes it the chat's model and loads it. True once loaded."""
        self.catalog.get(model_id)
        self.notice.set("")
        sig = self.status(model_id)
        sig.set(ModelStatus(model_id, "loading", sig.peek().bytes_stored, sig.peek().bytes_total, load_progress=0.0))
        try:
            await self.session.use_model(model_id)
            return True
        except AppError as exc:
            self.notice.set(f"{model_id} could not load: {exc}")
            return False
        finally:
            await self.refresh(model_id, *self._statuses)

    async def delete(self, model_id: str) -> int:
        self.notice.set("")
        try:
            freed = await self.manager.delete(model_id)
        finally:
            if self.shortfall.peek() is not None:
                self.shortfall.set(None)
            await self.refresh(model_id)
        return freed

    async def evict_lru(self) -> list[str]:
        """Delete the least recently used stored model (never the loaded one). Only that one: a twin
        of the loaded model (same files) frees nothing, and the notice says it was only forgotten."""
        view = self.storage.peek()
        if view is None:
            await self.refresh()
            view = self.storage.peek()
        loaded = self.manager.backend.loaded
        candidates = [i for i, _n, _used in view.models if i != loaded]
        if not candidates:
            self.notice.set("Nothing to remove: no stored model other than the one in use.")
            return []
        self.notice.set("")
        first = candidates[0]
        try:
            freed = await self.manager.delete(first)
        finally:
            await self.refresh(first)
        if freed == 0:
            self.notice.set(f"{first} was forgotten; its files are kept, another model uses them.")
        return [first]

    async def add_model(self, fields: dict[str, str]) -> str:
        """The "Add your own model" form: build the record, check it against the network and this GPU
        (app/models/manager.py add_model), add it and select it. Raises InvalidRequest or
        ModelFetchFailed naming what is wrong; nothing is stored then."""
        from app.models.custom import build_record
        from app.runtime import format_bytes

        record = build_record(fields.get("source", ""), fields.get("lib", ""), model_id=fields.get("id", ""),
                              context_window=fields.get("context"), vram_mb=fields.get("vram"))
        info, plan = await self.manager.add_model(record, self.session.gpu.peek())
        self.sizes.update(lambda known: {**known, info.id: plan.total_bytes})
        self.revision.update(lambda n: n + 1)
        await self.select(info.id)
        return (f"Added {info.id}: {format_bytes(plan.total_bytes)} to download, {len(plan.artifacts)} files. "
                "Download it, then use it for the chat.")

    async def remove_model(self, model_id: str) -> str:
        """Forget one of the user's own models and delete its stored files."""
        from app.runtime import format_bytes

        freed = await self.manager.remove_model(model_id)
        with batch():
            if self.selected.peek() == model_id:
                self.selected.set(None)
            self.sizes.update(lambda known: {k: v for k, v in known.items() if k != model_id})
            self.revision.update(lambda n: n + 1)
        self._statuses.pop(model_id, None)
        await self.refresh()
        return f"Removed {model_id}" + (f"; {format_bytes(freed)} freed." if freed else ".")

    def libraries(self) -> list[str]:
        """The model libraries the vendored web-llm release's own models use (suggested in the form)."""
        return sorted({m.lib_url for m in self.catalog.all() if m.source == "prebuilt"})

    async def persist(self) -> bool:
        granted = await self.manager.persist()
        if not granted:
            self.notice.set("The browser did not grant persistent storage; it may remove models under pressure.")
        await self.refresh()
        return granted


# ---------------------------------------------------------------------- words for the page


def format_duration(seconds: float) -> str:
    """``75`` -> ``'1 min 15 s'``; under a second -> ``'<1 s'``."""
    s = int(round(seconds))
    if s < 1:
        return "<1 s"
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s" if s % 60 else f"{s // 60} min"
    return f"{s // 3600} h {s % 3600 // 60} min"


def format_ago(then: float | None, now: float) -> str:
    """When a model was last used, in words."""
    if then is None:
        return "never used"
    delta = max(0.0, now - then)
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if delta >= size:
            return f"used {int(delta // size)} {unit} ago"
    return "used just now"


PHASE_WORDS = {"planning": "Preparing", "downloading": "Downloading", "waiting": "Waiting for another tab",
               "verifying": "Checking", "done": "Done"}


def progress_line(status: ModelStatus) -> str:
    """``"Downloading · 43% · 1.2 MiB of 2.8 MiB · 3.4 MiB/s · 2 s left"``, or the loading step."""
    from app.runtime import format_bytes

    if status.state == "loading":
        share = status.load_progress or 0.0
        text = f"Loading · {round(share * 100)}%"
        return f"{text} · {status.load_text}" if status.load_text else text
    p = status.progress
    if status.state != "downloading":
        return ""
    if p is None:
        return "Preparing the download…"
    parts = [PHASE_WORDS.get(p.phase, p.phase.capitalize()), f"{int(p.fraction * 100)}%",
             f"{format_bytes(p.bytes_done)} of {format_bytes(p.bytes_total)}"]
    if p.rate:
        parts.append(f"{format_bytes(int(p.rate))}/s")
    if p.eta is not None and p.phase == "downloading":
        parts.append(f"{format_duration(p.eta)} left")
    parts.append(f"{p.files_done}/{p.files_total} files")
    return " · ".join(parts)


def progress_fraction(status: ModelStatus) -> float | None:
    if status.state == "loading":
        return status.load_progress or 0.0
    if status.state == "downloading":
        return status.progress.fraction if status.progress is not None else None
    return None


def state_badge(status: ModelStatus) -> str:
    """The word a model's row shows for its state (empty when nothing is stored)."""
    if status.state in ("downloading", "loading"):
        share = progress_fraction(status)
        return f"{status.state} {int(share * 100)}%" if share is not None else status.state
    if status.state == "failed":
        return "partial (failed)" if status.bytes_stored else "failed"
    return "" if status.state == "not-downloaded" else status.state


def static_badges(info: Any, fit: Any, size: int | None) -> list[tuple[str, str, str]]:
    """(kind, text, title) badges of a catalog model: size, VRAM, context, and fit on this GPU."""
    from app.runtime import format_bytes

    out = []
    if getattr(info, "embedding", False):
        out.append(("embedding", "for Files", "An embedding model: it reads your files for Files answers; "
                    "it does not chat"))
    if size is not None:
        out.append(("size", format_bytes(size), "Download size"))
    if info.vram_mb is not None:
        out.append(("vram", f"{info.vram_mb / 1024:.1f} GiB VRAM", "GPU memory the model needs"))
    out.append(("context", f"{info.context_window // 1024}k context" if info.context_window >= 1024
                else f"{info.context_window} context", "Context window (tokens)"))
    if fit is not None:
        missing = [r for r in fit.reasons if r.startswith("needs ")]
        if fit.ok:
            out.append(("fit-ok", "fits this GPU", "; ".join(fit.notes)))
        elif any("shader-f16" in r for r in missing):
            out.append(("fit-no", "needs shader-f16", "; ".join(fit.reasons)))
        else:
            out.append(("fit-no", "does not fit", "; ".join(fit.reasons)))
    return out
