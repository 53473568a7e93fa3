"""The header's model switcher (plain Python; the DOM side is :mod:`app.ui.switcher_view`).

    switcher = ModelSwitcher(session)
    switcher.label.get()          # ("Llama-3.2-1B-Instruct-q4f32_1-MLC", "not loaded")
    await switcher.refresh()      # asks the model manager (web-llm's catalog loads now, once)
    switcher.choices.get()        # the current model first, then the stored ones
    await switcher.switch("synth-b")   # the chat's model from now on (the picker's "Use for chat")

What it shows comes from the session: the chosen model (``session.model``) and the model events
the model manager emits through it (``app.model.download``, ``app.model.load``,
``app.model.load.failed``), whoever started the download or the load (the Models panel, the chat's
first message, the Python panel). Until :meth:`refresh` asks the manager, nothing costs the
catalog's module: the current model's id and what the events said (loading, ready) are shown.
"""

from __future__ import annotations

from typing import Any

from app.errors import AppError
from app.models.status import ModelStatus
from app.ui.store import Computed, Signal, batch

STATE_WORDS = {"not-downloaded": "not downloaded", "partial": "partly downloaded", "downloaded": "downloaded",
               "loaded": "ready", "failed": "failed"}
UNKNOWN = "not loaded"  # before the manager was asked: whether its files are stored is not known


def status_words(status: ModelStatus | None) -> str:
    """``"downloading 43%"``, ``"loading 70%"``, ``"ready"``, ``"not downloaded"``, ...; ``None``
    (nothing known yet) -> ``"not loaded"``."""
    if status is None:
        return UNKNOWN
    if status.state == "downloading":
        total = status.bytes_total or 0
        return f"downloading {int(100 * status.bytes_stored / total)}%" if total > 0 else "downloading"
    if status.state == "loading":
        return f"loading {int(100 * (status.load_progress or 0.0))}%"
    return STATE_WORDS.get(status.state, str(status.state))


class ModelSwitcher:
    """See the module docstring. ``session`` is the page's :class:`app.session.Session`."""

    def __init__(self, session: Any) -> None:
        self.session = session
        self.open: Signal[bool] = Signal(False)
        self.statuses: Signal[dict[str, ModelStatus]] = Signal({})
        self.stored: Signal[tuple[str, ...]] = Signal(())  # models with files here, once asked
        self.notice: Signal[str] = Signal("")
        self.label = Computed(self._label)
        self.choices = Computed(self._choices)
        self.stop_listening = session.on_event(self._on_event)

    # ------------------------------------------------------------------ reading

    def status(self, model_id: str) -> ModelStatus | None:
        return self.statuses.get().get(model_id)

    def _label(self) -> tuple[str, str]:
        model = self.session.model.get()
        gpu = self.session.gpu.get()
        if not model:
            return ("No model chosen", "")
        if gpu is not None and not gpu.available:
            return (model, "needs WebGPU")
        return (model, status_words(self.status(model)))

    def _choices(self) -> tuple[str, ...]:
        model = self.session.model.get()
        stored = [m for m in self.stored.get() if m != model]
        busy = [m for m, s in self.statuses.get().items() if s.state in ("downloading", "loading", "loaded")
                and m != model and m not in stored]
        return tuple(([model] if model else []) + sorted(stored + busy))

    # ------------------------------------------------------------------ what the session says

    def _put(self, status: ModelStatus) -> None:
        self.statuses.update(lambda known: {**known, status.model_id: status})

    def _on_event(self, event: dict[str, Any]) -> None:
        name = event.get("event")
        model_id = event.get("gen_ai.request.model")
        if not model_id or name not in ("app.model.download", "app.model.load", "app.model.load.failed"):
            return
        model_id = str(model_id)
        before = self.statuses.peek().get(model_id)
        if name == "app.model.download":
            phase = event.get("phase")
            done, total = int(event.get("bytes_done") or 0), event.get("bytes_total")
            if phase == "done":
                state = "downloaded"
                self.stored.update(lambda ids: ids if model_id in ids else (*ids, model_id))
            elif phase == "cancelled":
                state = "partial"
            elif phase == "failed":
                state = "failed"
            else:
                state = "downloading"
            self._put(ModelStatus(model_id, state, done, int(total) if total is not None else None))
        elif name == "app.model.load.failed":
            self._put(ModelStatus(model_id, "failed", before.bytes_stored if before else 0,
                                  before.bytes_total if before else None))
        else:
            progress = float(event.get("progress") or 0.0)
            with batch():
                # web-llm holds one model: another one loading means the one before is not loaded now.
                self.statuses.update(lambda known: {
                    m: ModelStatus(m, "downloaded", s.bytes_stored, s.bytes_total)
                    if s.state == "loaded" and m != model_id else s for m, s in known.items()})
                if progress >= 1.0:
                    self._put(ModelStatus(model_id, "loaded"))
                    self.stored.update(lambda ids: ids if model_id in ids else (*ids, model_id))
                else:
                    self._put(ModelStatus(model_id, "loading", load_progress=progress,
                                          load_text=str(event.get("text") or "")))

    # ------------------------------------------------------------------ intents

    async def refresh(self) -> None:
        """Ask the model manager what is stored and each listed model's state (this builds the
        manager, loading web-llm's catalog, the first time)."""
        manager = await self.session.models()
        report = await manager.storage.report()
        chat = [m for m in report.models if m in manager.catalog and not manager.catalog.get(m).embedding]
        stored = tuple(sorted(chat))  # an embedding model (Files) is stored too, but does not chat
        wanted = {*stored, *(m for m in (self.session.model.peek(), manager.backend.loaded) if m)}
        statuses = {m: await manager.status(m) for m in wanted if m in manager.catalog}
        with batch():
            self.stored.set(stored)
            self.statuses.update(lambda known: {**known, **statuses})

    async def switch(self, model_id: str) -> bool:
        """Chat with ``model_id`` from now on: the session's intent the Models panel's "Use for chat"
        uses (it becomes the chosen model and loads; progress arrives as events). True once loaded."""
        self.open.set(False)
        self.notice.set("")
        try:
            await self.session.use_model(model_id)
            return True
        except AppError as exc:
            self.notice.set(f"{model_id} could not load: {type(exc).__name__}: {exc}")
            before = self.statuses.peek().get(model_id)
            self._put(ModelStatus(model_id, "failed", before.bytes_stored if before else 0,
                                  before.bytes_total if before else None, error=exc))
            return False

    def dispose(self) -> None:
        self.stop_listening()
