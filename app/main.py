"""Page entry point: PyScript runs ``start()`` once Python is up.

Start-up does the least it can: mark the page ready, show the versions, then probe WebGPU in the
background. Features import their modules (and load their wheels) when first used.
"""

from __future__ import annotations

import asyncio

from typing import TYPE_CHECKING

from app import ffi

if TYPE_CHECKING:
    from app.runtime import WebGPUReport

_tasks: set[asyncio.Task] = set()


def start() -> None:
    ffi.set_text("python-version", python_version_text(ffi.versions()))
    ffi.set_text("status", "Ready")
    ffi.set_body_state("ready")
    probe = spawn(show_webgpu())
    spawn(mount_chat(probe))


def python_version_text(v: dict[str, str]) -> str:
    """"Python 3.14.2 (Pyodide 314.0.7), started from its snapshot in 0.31 s" for the Device sheet."""
    text = f"Python {v['python']} (Pyodide {v.get('pyodide', '?')})"
    if "start_ms" in v:
        how = "from its snapshot " if v.get("start") == "snapshot" else ""
        text += f", started {how}in {int(v['start_ms']) / 1000:.2f} s"
    return text


def spawn(coro) -> asyncio.Task:
    """Run ``coro`` in the background; keep a reference and report a crash instead of losing it."""
    task = asyncio.ensure_future(coro)
    _tasks.add(task)
    task.add_done_callback(_finished)
    return task


def _finished(task: asyncio.Task) -> None:
    _tasks.discard(task)
    if not task.cancelled() and task.exception() is not None:
        import traceback

        traceback.print_exception(task.exception())


async def mount_chat(probe: asyncio.Task) -> None:
    from app.ui.page import mount  # after "ready": the UI modules are not needed to show it

    await mount(probe)


async def show_webgpu() -> WebGPUReport:
    from app.runtime import WebGPUReport  # after "ready": dataclasses is not free to import

    report = WebGPUReport.from_probe(await ffi.probe_webgpu())
    ffi.set_text("webgpu-summary", report.summary())
    ffi.set_attr("webgpu-summary", "data-webgpu", "available" if report.available else "missing")
    if report.available:
        ffi.set_rows("webgpu-limits", report.limit_rows())
        ffi.set_hidden("webgpu-limits", False)
        ffi.set_hidden("webgpu-help", True)
    else:
        ffi.set_text("webgpu-help", report.help_text())
        ffi.set_hidden("webgpu-help", False)
        ffi.set_hidden("webgpu-limits", True)
    return report
