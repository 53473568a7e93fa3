"""The Files sheet (state: :mod:`app.ui.files`): pick files to add, see each one read and embedded
with a progress bar and Cancel, the stored files with Delete, and whether the chat answers from them.
"""

from __future__ import annotations

from typing import Any

from app import ffi
from app.ffi import files as file_bridge
from app.ui.files import FilesState, Job
from app.ui.store import Scope
from app.ui.view import confirm_then, spawn

STAGES = {"waiting": "waiting", "reading": "reading", "embedding": "embedding", "saving": "saving"}


class FilesView:
    def __init__(self, state: FilesState) -> None:
        self.state = state
        self.scope = Scope()
        self.input = ffi.node("files-input")
        self.jobs = ffi.node("files-jobs")
        self.list = ffi.node("files-list")
        self.use = ffi.node("files-use")
        s = self.scope
        s.add(ffi.listen(self.input, "change", self._on_pick))
        s.add(ffi.listen(self.jobs, "click", self._on_jobs_click))
        s.add(ffi.listen(self.list, "click", self._on_list_click))
        s.add(ffi.listen(self.use, "change", self._on_use))
        s.effect(self._show_jobs)
        s.effect(self._show_files)
        s.effect(lambda: ffi.set_text("files-said", state.said.get()))
        s.effect(lambda: ffi.set_prop(self.use, "checked", bool(state.use.get())))
        spawn(state.refresh())

    def _show_jobs(self) -> None:
        items = []
        for job in self.state.jobs.get():
            items.append(self._job_item(job))
        ffi.replace_children(self.jobs, *items)

    @staticmethod
    def _job_item(job: Job) -> ffi.Node:
        item = ffi.element("li", attrs={"data-id": job.id, "data-stage": job.stage})
        words = f"{job.name}: {STAGES.get(job.stage, job.stage)}"
        if job.stage == "embedding" and job.total:
            words += f" {job.done}/{job.total} passages"
        label = ffi.element("span", words, attrs={"id": f"files-job-{job.id}"})
        attrs = {"max": str(max(job.total, 1)), "aria-labelledby": f"files-job-{job.id}"}
        if job.stage in ("embedding", "saving"):
            attrs["value"] = str(job.done)
        bar = ffi.element("progress", attrs=attrs)  # no value: indeterminate while reading
        cancel = ffi.element("button", "Cancel", attrs={"type": "button", "data-action": "cancel",
                                                        "aria-label": f"Cancel adding {job.name}"})
        ffi.append(item, label, bar, cancel)
        return item

    def _show_files(self) -> None:
        items = []
        for info in self.state.files.get():
            item = ffi.element("li", attrs={"data-id": info.id})
            passages = f"{info.chunks} passage{'s' if info.chunks != 1 else ''}"
            ffi.append(item, ffi.element("span", info.name, attrs={"class": "file-name"}),
                       ffi.element("span", f" {info.kind}, {passages}", attrs={"class": "meta"}),
                       ffi.element("button", "Delete", attrs={"type": "button", "data-action": "delete",
                                                              "class": "quiet", "aria-label": f"Delete {info.name}"}))
            items.append(item)
        if not items:
            items.append(ffi.element("li", "No files yet.", attrs={"class": "meta"}))
        ffi.replace_children(self.list, *items)

    # ------------------------------------------------------------------ events

    def _on_pick(self, _facts: dict[str, Any]) -> bool:
        async def take() -> None:
            for chosen in await file_bridge.take_chosen(self.input):
                held = chosen["id"]
                self.state.add(chosen["name"], int(chosen["size"]),
                               lambda held=held: file_bridge.read_held(held),
                               lambda held=held: file_bridge.drop_held(held))

        spawn(take())
        return False

    def _on_jobs_click(self, facts: dict[str, Any]) -> bool:
        if facts.get("action") == "cancel" and facts.get("id"):
            return self.state.cancel(facts["id"])
        return False

    def _on_list_click(self, facts: dict[str, Any]) -> bool:
        if facts.get("action") == "delete" and facts.get("id"):
            file_id = facts["id"]
            name = next((f.name for f in self.state.files.peek() if f.id == file_id), "this file")
            confirm_then(f"Delete {name} and its passages?", lambda: self.state.remove(file_id))
            return True
        return False

    def _on_use(self, _facts: dict[str, Any]) -> bool:
        self.state.use.set(bool(ffi.get_prop(self.use, "checked")))
        return False

    def dispose(self) -> None:
        self.scope.dispose()
        self.state.dispose()
