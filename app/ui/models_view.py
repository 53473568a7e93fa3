"""DOM views of the model picker (#models): the list, the selected model with its progress and
actions, and the storage panel. State and intents live in :mod:`app.ui.models`.

Each list row has two effects: one for what does not change while a model downloads (size, VRAM,
context, fit) and one for its state word, so a progress event rewrites one ``<span>`` per row plus
the progress bar and line of the selected model, nothing else.
"""

from __future__ import annotations

import time
from typing import Any

from app import ffi
from app.runtime import format_bytes
from app.ui.models import (BUSY, ModelsState, format_ago, progress_fraction, progress_line, state_badge,
                           static_badges)
from app.ui.store import Scope
from app.ui.view import confirm_then, spawn

MAX_ROWS = 60  # rows shown at once; the search reaches the rest


def _badges(parent: ffi.Node, badges: list[tuple[str, str, str]]) -> None:
    ffi.replace_children(parent, *(ffi.element("span", text, attrs={"class": f"badge badge-{kind}", "title": title})
                                   for kind, text, title in badges))


class ModelRow:
    def __init__(self, state: ModelsState, info: Any) -> None:
        self.scope = Scope()
        self.root = ffi.element("li", attrs={"class": "model", "data-id": info.id})
        pick = ffi.element("button", info.id, attrs={"type": "button", "class": "pick", "data-action": "select"})
        badges = ffi.element("span", attrs={"class": "badges"})
        word = ffi.element("span", attrs={"class": "badge badge-state"})
        ffi.append(self.root, pick, badges, word)
        size = lambda: state.sizes.get().get(info.id)  # noqa: E731
        self.scope.effect(lambda: _badges(badges, static_badges(info, state.fit(info), size())))
        status = state.status(info.id)

        def show_state() -> None:
            s = status.get()
            ffi.set_node_text(word, state_badge(s))
            ffi.set_node_attr(self.root, "data-state", s.state)

        self.scope.effect(show_state)
        self.scope.effect(lambda: ffi.set_node_attr(pick, "aria-pressed",
                                                    "true" if state.selected.get() == info.id else "false"))

    def dispose(self) -> None:
        self.scope.dispose()
        ffi.remove(self.root)


class ModelsView:
    """#models: search and sort, the list, the selected model, and the storage panel."""

    def __init__(self, state: ModelsState) -> None:
        self.state = state
        self.scope = Scope()
        self.root = ffi.node("models")
        self.list = ffi.node("model-list")
        self._rows: dict[str, ModelRow] = {}
        n = ffi.node
        self.detail, self.name, self.badges, self.facts = n("model-detail"), n("model-name"), n("model-badges"), n("model-facts")
        self.progress, self.bar, self.progress_text = n("model-progress"), n("model-progress-bar"), n("model-progress-text")
        self.buttons = {a: n(f"model-{a}") for a in ("download", "cancel", "use", "delete", "benchmark")}
        self.notice, self.shortfall = n("model-notice"), n("model-shortfall")
        s = self.scope
        s.effect(self._sync_rows)
        s.effect(self._show_current)
        s.effect(self._show_selected)
        s.effect(self._show_selected_status)
        s.effect(self._show_notice)
        s.effect(self._show_shortfall)
        s.effect(self._show_storage)
        s.effect(self._show_benchmarks)
        s.add(ffi.listen(self.root, "click", self._on_click))
        s.add(ffi.listen(n("model-search"), "input", lambda f: state.query.set(f.get("value") or "")))
        s.add(ffi.listen(n("model-sort"), "change", lambda f: state.sort.set(f.get("value") or "name")))
        s.add(self._clear_rows)
        s.add(ffi.listen(n("add-model-form"), "submit", self._on_add))
        libs = n("model-libs")
        for url in state.libraries():
            ffi.append(libs, ffi.element("option", attrs={"value": url}))
        ffi.set_node_attr(self.root, "data-state", "ready")

    # ------------------------------------------------------------------ list

    def _sync_rows(self) -> None:
        found = self.state.visible.get()
        shown = found[:MAX_ROWS]
        keep = {m.id for m in shown}
        for model_id in [i for i in self._rows if i not in keep]:
            self._rows.pop(model_id).dispose()
        for info in shown:
            if info.id not in self._rows:
                self._rows[info.id] = ModelRow(self.state, info)
            ffi.append(self.list, self._rows[info.id].root)
        more = len(found) - len(shown)
        count = f"{len(found)} model{'' if len(found) == 1 else 's'}" + (f"; the first {len(shown)} are shown, search to narrow" if more else "")
        ffi.set_node_text(ffi.node("model-count"), count if found else "No model matches.")

    def _clear_rows(self) -> None:
        for row in self._rows.values():
            row.dispose()
        self._rows = {}

    # ------------------------------------------------------------------ current and selected

    def _show_current(self) -> None:
        model = self.state.session.model.get()
        if not model:
            ffi.set_node_text(ffi.node("model-current"), "No model chosen for the chat.")
            return
        s = self.state.status(model).get()
        word = {"loaded": "loaded", "loading": "loading…"}.get(s.state, "loads when you send")
        ffi.set_node_text(ffi.node("model-current"), f"Chat model: {model} ({word})")

    def _show_selected(self) -> None:
        model_id = self.state.selected.get()
        ffi.set_prop(self.detail, "hidden", model_id is None)
        if model_id is None or model_id not in self.state.catalog:
            return
        info = self.state.catalog.get(model_id)
        fit = self.state.fit(info)
        ffi.set_node_attr(self.detail, "data-id", model_id)
        ffi.set_node_text(self.name, model_id)
        _badges(self.badges, static_badges(info, fit, self.state.sizes.get().get(model_id)))
        ffi.set_prop(ffi.node("model-remove"), "hidden", info.source != "user")
        facts = [f"{'your model' if info.source == 'user' else 'prebuilt'}"]
        if fit is not None:
            facts += list(fit.reasons) + list(fit.notes)
        ffi.set_node_text(self.facts, "; ".join(facts))

    def _show_selected_status(self) -> None:
        model_id = self.state.selected.get()
        if model_id is None:
            return
        s = self.state.status(model_id).get()
        chat_model = self.state.session.model.get()
        share = progress_fraction(s)
        busy = s.state in BUSY
        ffi.set_prop(self.progress, "hidden", not busy)
        ffi.set_node_attr(self.detail, "data-state", s.state)
        if busy:
            if share is None:
                ffi.set_node_attr(self.bar, "value", None)  # indeterminate while planning
            else:
                ffi.set_prop(self.bar, "value", share)
            ffi.set_node_text(self.progress_text, progress_line(s))
        complete = s.state in ("downloaded", "loaded")
        download = self.buttons["download"]
        ffi.set_prop(download, "hidden", busy or complete)
        ffi.set_node_text(download, "Resume download" if s.bytes_stored and not complete else "Download")
        ffi.set_prop(self.buttons["cancel"], "hidden", s.state != "downloading")
        use = self.buttons["use"]
        in_use = s.state == "loaded" and chat_model == model_id
        embedding = model_id in self.state.catalog and self.state.catalog.get(model_id).embedding
        ffi.set_prop(use, "hidden", busy or embedding)  # it does not chat (it serves Files)
        ffi.set_prop(use, "disabled", in_use)
        ffi.set_node_text(use, "In use" if in_use else "Use for chat")
        ffi.set_prop(self.buttons["delete"], "hidden", busy or not (s.bytes_stored or complete))
        bench = self.buttons["benchmark"]
        ffi.set_prop(bench, "hidden", busy or not complete or embedding)
        ffi.set_prop(bench, "disabled", self.state.benchmarking.get() is not None)

    def _show_notice(self) -> None:
        text = self.state.notice.get()
        ffi.set_node_text(self.notice, text)
        ffi.set_prop(self.notice, "hidden", not text)

    def _show_shortfall(self) -> None:
        short = self.state.shortfall.get()
        ffi.set_prop(self.shortfall, "hidden", short is None or not short.evictable)
        if short is None or not short.evictable:
            ffi.replace_children(self.shortfall)
            return
        sizes = {i: n for i, n, _u in (self.state.storage.peek() or _EMPTY).models}
        items = []
        for model_id in short.evictable:
            item = ffi.element("li", attrs={"data-id": model_id})
            label = model_id + (f" ({format_bytes(sizes[model_id])})" if model_id in sizes else "")
            ffi.append(item, ffi.text_node(label + " "),
                       ffi.element("button", "Delete", attrs={"type": "button", "data-action": "free",
                                                              "aria-label": f"Delete {model_id} to make room"}))
            items.append(item)
        lead = ffi.element("p", f"Needs {format_bytes(short.needed)}, {format_bytes(short.available)} free. "
                                "Make room by deleting:")
        listing = ffi.element("ul")
        ffi.append(listing, *items)
        ffi.replace_children(self.shortfall, lead, listing)

    # ------------------------------------------------------------------ storage

    def _show_storage(self) -> None:
        view = self.state.storage.get()
        if view is None:
            return
        ffi.set_prop(ffi.node("quota-bar"), "value", view.fraction)
        models = f"Models: {format_bytes(view.model_bytes)}"
        if view.quota > 0:
            text = (f"{models} of {format_bytes(view.quota)} this site may store "
                    f"(the browser counts {format_bytes(view.usage)} in all; its count lags deletions)")
        else:
            text = f"{models} (the browser reports no quota)"
        ffi.set_node_text(ffi.node("quota-text"), text)
        ffi.set_node_attr(ffi.node("quota-bar"), "data-usage", str(view.model_bytes))
        ffi.set_node_text(ffi.node("persist-status"), "Kept: the browser will not remove models under pressure."
                          if view.persisted else "Not persistent: the browser may remove models when space is short.")
        ffi.set_prop(ffi.node("persist"), "hidden", view.persisted)
        now = time.time()
        items = []
        for model_id, size, used in view.models:
            item = ffi.element("li", attrs={"data-id": model_id, "class": "stored"})
            ffi.append(item, ffi.element("span", model_id, attrs={"class": "name"}),
                       ffi.element("span", f"{format_bytes(size)} · {format_ago(used, now)}", attrs={"class": "meta"}),
                       ffi.element("button", "Delete", attrs={"type": "button", "data-action": "delete",
                                                              "class": "quiet", "aria-label": f"Delete {model_id}"}))
            items.append(item)
        if not items:
            items.append(ffi.element("li", "No model is stored.", attrs={"class": "meta"}))
        ffi.replace_children(ffi.node("storage-list"), *items)
        ffi.set_prop(ffi.node("evict-lru"), "hidden", len(view.models) < 1)

    # ------------------------------------------------------------------ benchmarks

    def _show_benchmarks(self) -> None:
        ffi.set_node_text(ffi.node("bench-said"), self.state.bench_said.get())
        rows = self.state.bench_rows.get()
        ffi.set_prop(ffi.node("bench-table"), "hidden", not rows)
        fastest = max((r["decode_tps"] or 0 for r in rows), default=0) or 1
        items = []
        for r in rows:
            decode = r["decode_tps"]
            # The chart: one bar per model, its decode rate against the fastest one's.
            bar = ffi.element("meter", attrs={"min": "0", "max": str(fastest), "value": str(decode or 0),
                                              "aria-label": f"{r['model']}: decode speed"})
            cell = ffi.element("td", attrs={"class": "rate"})
            ffi.append(cell, ffi.text_node(f"{decode:g} t/s " if decode is not None else "– "), bar)
            item = ffi.element("tr", attrs={"data-id": r["model"]})
            load = f"{r['load_s']:.1f} s" if r["load_s"] is not None else "–"
            ffi.append(item, ffi.element("th", r["model"], attrs={"scope": "row"}), ffi.element("td", load),
                       ffi.element("td", f"{r['ttft_ms']:g} ms"), ffi.element("td", f"{r['prefill_tps']:g} t/s"), cell)
            items.append(item)
        ffi.replace_children(ffi.node("bench-rows"), *items)

    # ------------------------------------------------------------------ events

    def _on_click(self, facts: dict[str, Any]) -> bool:
        action, model_id = facts.get("action"), facts.get("id")
        if action in self._per_model and model_id:
            self._per_model[action](model_id)
        elif action in self._panel:
            self._panel[action]()
        else:
            return False
        return True

    @property
    def _per_model(self) -> dict[str, Any]:
        """``data-action`` of a model's controls -> its intent."""
        state = self.state
        return {"select": lambda i: spawn(state.select(i)), "download": lambda i: spawn(state.download(i)),
                "cancel": state.cancel, "use": lambda i: spawn(state.use(i)),
                "delete": self._delete, "free": self._delete, "remove": self._remove,
                "benchmark": lambda i: spawn(state.benchmark(i))}

    @property
    def _panel(self) -> dict[str, Any]:
        """``data-action`` of the storage panel's controls -> its intent."""
        return {"evict-lru": lambda: spawn(self.state.evict_lru()), "persist": lambda: spawn(self.state.persist())}

    def _on_add(self, _facts: dict[str, Any]) -> bool:
        fields = {name: str(ffi.get_prop(ffi.node(f"add-model-{name}"), "value") or "")
                  for name in ("source", "lib", "id", "context", "vram")}
        spawn(self._said(self.state.add_model(fields)))
        return True  # the form is handled here; the page never navigates

    def _remove(self, model_id: str) -> None:
        confirm_then(f"Remove {model_id} from the list and delete its stored files?",
                     lambda: self._said(self.state.remove_model(model_id)), yes="Remove")

    async def _said(self, intent: Any) -> None:
        """Run an intent and say how it went under the form (a refusal in words, nothing stored)."""
        from app.errors import AppError

        said = ffi.node("add-model-said")
        ffi.set_node_text(said, "Checking…")
        try:
            ffi.set_node_text(said, await intent)
        except AppError as exc:
            ffi.set_node_text(said, f"{type(exc).__name__}: {exc}")

    def _delete(self, model_id: str) -> None:
        confirm_then(f"Delete the stored files of {model_id}?", lambda: self.state.delete(model_id))

    def dispose(self) -> None:
        self.scope.dispose()


class _Empty:
    models: tuple = ()


_EMPTY = _Empty()
