"""The Files sheet's state (plain Python; the DOM side is :mod:`app.ui.files_view`).

    files = FilesState(session.knowledge(), session.use_files)
    await files.refresh()                       # the stored files
    files.add(name, size, read)                 # read: async () -> bytes; a job with progress starts
    files.cancel(job_id)                        # stops it; nothing of that file is stored
    await files.remove(file_id)                 # the file and its vectors are deleted

One job per file being added, with its stage (reading, embedding, saving) and chunks done of total.
A file over the size limit is refused from its size alone, before any byte is read. Every outcome
is said in words (``said``): added, cancelled, or the typed error's message.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

from app.errors import AppError, FileTooLarge
from app.ui.store import Signal

_ids = itertools.count(1)


@dataclass(frozen=True)
class Job:
    id: str
    name: str
    stage: str = "waiting"  # waiting | reading | embedding | saving
    done: int = 0
    total: int = 0


class FilesState:
    def __init__(self, knowledge: Any, use: Signal[bool]) -> None:
        self.knowledge = knowledge
        self.use = use  # whether the chat answers from the files
        self.files: Signal[list[Any]] = Signal([])  # app.knowledge.FileInfo, oldest first
        self.jobs: Signal[list[Job]] = Signal([])
        self.said: Signal[str] = Signal("")
        self._tasks: dict[str, asyncio.Task] = {}

    async def refresh(self) -> None:
        try:
            self.files.set(await self.knowledge.files())
        except AppError as exc:
            self.said.set(f"The files could not be read: {type(exc).__name__}: {exc}")

    def add(self, name: str, size: int, read: Callable[[], Awaitable[bytes]],
            drop: Callable[[], Awaitable[None]] | None = None) -> Job | None:
        """Start adding one file; None (and why, in ``said``) when it is refused at once."""
        limit = self.knowledge.max_bytes
        if size > limit:
            self.said.set(f"{FileTooLarge.__name__}: {name} is {size / 2**20:.0f} MB; files of up to "
                          f"{limit / 2**20:.0f} MB can be added (split it, or add the parts you need)")
            if drop is not None:
                asyncio.ensure_future(drop())
            return None
        job = Job(id=str(next(_ids)), name=name)
        self.jobs.update(lambda jobs: [*jobs, job])
        self._tasks[job.id] = asyncio.ensure_future(self._run(job, read))
        return job

    def _set(self, job_id: str, **changes: Any) -> None:
        self.jobs.update(lambda jobs: [replace(j, **changes) if j.id == job_id else j for j in jobs])

    async def _run(self, job: Job, read: Callable[[], Awaitable[bytes]]) -> None:
        try:
            self._set(job.id, stage="reading")
            data = await read()

            def progress(report: dict[str, Any]) -> None:
                self._set(job.id, stage=report["stage"], done=report["done"], total=report["total"])

            info = await self.knowledge.add(job.name, data, on_progress=progress)
            self.said.set(f"Added {info.name}: {info.chunks} passage{'s' if info.chunks != 1 else ''}.")
        except asyncio.CancelledError:
            self.said.set(f"Cancelled {job.name}: nothing of it was stored.")
        except Exception as exc:  # noqa: BLE001 - every failure is said; nothing was stored
            self.said.set(f"{type(exc).__name__}: {exc}")
        finally:
            self._tasks.pop(job.id, None)
            self.jobs.update(lambda jobs: [j for j in jobs if j.id != job.id])
            await self.refresh()

    def cancel(self, job_id: str) -> bool:
        task = self._tasks.get(job_id)
        if task is None:
            return False
        task.cancel()
        return True

    async def remove(self, file_id: str) -> str:
        name = next((f.name for f in self.files.peek() if f.id == file_id), file_id)
        removed = await self.knowledge.remove(file_id)
        await self.refresh()
        said = f"Deleted {name} and its passages." if removed else f"{name} was already gone."
        self.said.set(said)
        return said

    def dispose(self) -> None:
        for task in list(self._tasks.values()):
            task.cancel()
