"""What the app knows of one model at a moment: its lifecycle state and progress (plain data).

    status = await manager.status("my-model")
    status.state is ModelState.DOWNLOADED, status.bytes_stored, status.bytes_total
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class ModelState(StrEnum):
    """A model's lifecycle. The values are the words the page and the events use."""

    NOT_DOWNLOADED = "not-downloaded"  # nothing of it is stored
    PARTIAL = "partial"  # some files, or staged bytes of a cut download: "Resume download"
    DOWNLOADED = "downloaded"  # every file stored: loads without the network
    DOWNLOADING = "downloading"  # a download runs (progress in ``ModelStatus.progress``)
    LOADING = "loading"  # web-llm is loading it onto the GPU (``load_progress``)
    LOADED = "loaded"  # in the engine, answering
    FAILED = "failed"  # the last download or load failed (``ModelStatus.error``)


STATES = tuple(s.value for s in ModelState)


@dataclass(frozen=True, slots=True)
class ModelStatus:
    model_id: str
    state: ModelState
    bytes_stored: int = 0
    bytes_total: int | None = None  # None until the model's files have been sized
    files_stored: int = 0
    files_total: int | None = None
    progress: Any = None  # app.models.download.DownloadProgress while downloading
    load_progress: float | None = None  # 0..1 while loading
    load_text: str = ""
    error: Any = None  # the app.errors.AppError of the last failed attempt

    def __post_init__(self) -> None:
        object.__setattr__(self, "state", ModelState(self.state))  # a word from older code: checked here
