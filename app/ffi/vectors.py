"""The vector index of app.knowledge in JavaScript (``static/bridge/vectors.js``, loaded on first use).

    index = await js_vector_index()
    index.append(float32_bytes, 384)
    index.search(query, 5)            # [(row, score)], best first

Exact search in Pyodide's Python takes seconds at 50k chunks; the same loop over a Float32Array takes
tens of milliseconds (bench/knowledge.py). Only bytes, numbers and JSON cross.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from app.ffi import _core

__all__ = ["JsVectorIndex", "js_vector_index"]

VECTORS_MODULE_URL = "static/bridge/vectors.js"


class JsVectorIndex:
    """app.knowledge.VectorIndex over a Float32Array in the page."""

    def __init__(self, index: Any) -> None:
        self._index = index

    def append(self, data: bytes, dims: int) -> None:
        self._index.append(_core.to_js(data), dims)

    def keep(self, rows: Sequence[int]) -> None:
        self._index.keep(_core.to_js(list(rows)))

    def search(self, query: Sequence[float], k: int, allowed: Sequence[int] | None = None) -> list[tuple[int, float]]:
        raw = self._index.search(_core.to_js(list(query)), k, None if allowed is None else _core.to_js(list(allowed)))
        return [(int(row), float(score)) for row, score in json.loads(raw)]


async def js_vector_index() -> JsVectorIndex:
    if not _core.IN_BROWSER:
        raise _core.browser_only("the JavaScript vector index")
    module = await _core.import_module(VECTORS_MODULE_URL)
    return JsVectorIndex(module.createIndex())
