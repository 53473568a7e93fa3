"""What every benchmark prints besides its figures: the machine and the versions it ran on, and its
figures as JSON for ``python3 build.py bench`` (which writes README's "Performance" table).

Both sides of a comparison run in one process, back to back and alternating, at least 5 times;
a ratio is that of the two medians.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
from pathlib import Path
from typing import Any


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(dist: Path, browser_version: str) -> dict[str, Any]:
    """The machine (CPU, cores, load when the run began) and the versions that ran."""
    versions = json.loads((dist / "static" / "vendor" / "VERSIONS.json").read_text())
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return {
        "machine": f"{cpu_model()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}"
                   + (f", load {load:.1f}" if load is not None else ""),
        "versions": f"Chromium {browser_version}, Pyodide {versions['pyodide']} (Python {versions['python']}), "
                    f"web-llm {versions['@mlc-ai/web-llm']}, PyScript {versions['@pyscript/core']}",
    }


def print_environment(env: dict[str, Any]) -> None:
    print(f"machine: {env['machine']}")
    print(f"versions: {env['versions']}")


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def write_json(path: str | None, figures: dict[str, Any]) -> None:
    """``--json PATH``: the figures for build.py bench."""
    if path:
        Path(path).write_text(json.dumps(figures, indent=1) + "\n")
