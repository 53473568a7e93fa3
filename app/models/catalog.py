"""Every model this app can run: web-llm's prebuilt list plus models the user adds.

    catalog = await Catalog.load()
    info = catalog.get("Llama-3.2-1B-Instruct-q4f32_1-MLC")
    catalog.fit(info, gpu_report)          # Fit(ok=True, reasons=())
    await catalog.add({"model_id": "my-model", "model": "https://host/org/my-model",
                       "model_lib": "https://host/libs/my-model.wasm", "vram_required_MB": 900})

A user model is a web-llm model record. It is checked before it is stored, kept in the app's IndexedDB
(so it survives reloads) and handed to web-llm in the same ``model_list`` as the prebuilt ones.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable
from urllib.parse import urlsplit

from app import ffi
from app.errors import InvalidRequest, ModelNotFound, UsageError
from app.ffi import storage as kv
from app.ffi.storage import KeyValueBridge
from app.models.layout import clean_model_url

DEFAULT_CONTEXT = 4096
USER_STORE = "models"
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._\-]{0,127}")  # fullmatch: "$" would let a trailing newline in


def required_features(record: dict[str, Any]) -> frozenset[str]:
    """GPU features a model needs. q*f16 weights need shader-f16 even when the record omits it."""
    needs = set(record.get("required_features") or ())
    if re.search(r"q\d+f16", record.get("model_id", "")):
        needs.add("shader-f16")
    return frozenset(needs)


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """One catalog entry. ``record`` is the web-llm model record, as web-llm will receive it."""

    id: str
    model_url: str
    lib_url: str
    vram_mb: float | None
    context_window: int
    required_features: frozenset[str]
    low_resource: bool
    source: str  # "prebuilt" | "user"
    record: dict[str, Any]

    @property
    def embedding(self) -> bool:
        """An embedding model (web-llm's ``model_type`` 1): it turns text into vectors for Files, it
        does not chat."""
        return self.record.get("model_type") == 1

    @property
    def base_url(self) -> str:
        """Where web-llm fetches this model's config, tokenizer, manifest and shards from."""
        return clean_model_url(self.model_url)

    @classmethod
    def from_record(cls, record: dict[str, Any], source: str) -> ModelInfo:
        overrides = record.get("overrides") or {}
        vram = record.get("vram_required_MB")
        return cls(
            id=record["model_id"], model_url=record["model"], lib_url=record["model_lib"],
            vram_mb=float(vram) if vram is not None else None,
            context_window=int(overrides.get("context_window_size") or DEFAULT_CONTEXT),
            required_features=required_features(record),
            low_resource=bool(record.get("low_resource_required")), source=source, record=record)


@dataclass(frozen=True, slots=True)
class Fit:
    """Whether a model can run on this page's GPU. ``reasons`` say why not (empty when it fits);
    ``notes`` say what cannot be checked from a browser."""

    ok: bool
    reasons: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()


def validate_record(record: Any) -> dict[str, Any]:
    """A user model record, checked field by field; raises :class:`InvalidRequest` naming the field."""
    if not isinstance(record, dict):
        raise InvalidRequest("a model record must be a dict", param="record")
    model_id = record.get("model_id")
    if not isinstance(model_id, str) or not _ID.fullmatch(model_id):
        raise InvalidRequest("model_id must be 1-128 letters, digits, '.', '_' or '-', starting with a "
                             f"letter or digit; got {model_id!r}", param="model_id")
    for key in ("model", "model_lib"):
        url = record.get(key)
        parts = urlsplit(url) if isinstance(url, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
            raise InvalidRequest(f"{key} must be an absolute http(s) URL; got {url!r}", param=key)
    vram = record.get("vram_required_MB")
    if vram is not None and (isinstance(vram, bool) or not isinstance(vram, (int, float))
                             or not math.isfinite(vram) or vram <= 0):
        raise InvalidRequest(f"vram_required_MB must be a positive number; got {vram!r}", param="vram_required_MB")
    features = record.get("required_features")
    if features is not None and (not isinstance(features, list) or not all(isinstance(f, str) for f in features)):
        raise InvalidRequest("required_features must be a list of strings", param="required_features")
    overrides = record.get("overrides")
    if overrides is not None and not isinstance(overrides, dict):
        raise InvalidRequest("overrides must be a dict", param="overrides")
    window = (overrides or {}).get("context_window_size")
    if window is not None and (isinstance(window, bool) or not isinstance(window, int) or window <= 0):
        raise InvalidRequest("overrides.context_window_size must be a positive integer",
                             param="overrides.context_window_size")
    return dict(record)


@runtime_checkable
class CatalogBridge(KeyValueBridge, Protocol):
    """What :meth:`Catalog.load` reads: web-llm's exports (app.ffi.engine) and the user's models (app.ffi.storage)."""

    async def webllm_exports(self, module_url: str,
                             versions_url: str = "static/vendor/VERSIONS.json") -> dict[str, Any]: ...


class Catalog:
    """The prebuilt models of the vendored web-llm plus user models. See the module docstring."""

    def __init__(self, prebuilt: Iterable[dict[str, Any]], user: Iterable[dict[str, Any]] = (), *,
                 store: KeyValueBridge = kv) -> None:
        self._store = store
        self._models: dict[str, ModelInfo] = {}
        for record in prebuilt:
            self._models[record["model_id"]] = ModelInfo.from_record(record, "prebuilt")
        for record in user:
            self._models[record["model_id"]] = ModelInfo.from_record(record, "user")

    @classmethod
    async def load(cls, *, module_url: str = "static/vendor/web-llm/index.js", extra: Iterable[dict] = (),
                   api: CatalogBridge = ffi) -> Catalog:
        """web-llm's prebuilt list, then ``extra`` records (e.g. from pyscript.toml), then the user's."""
        exports = await api.webllm_exports(module_url)
        stored = await api.kv_items(USER_STORE)
        user = [validate_record(r) for r in extra] + [stored[k] for k in sorted(stored)]
        return cls(exports["prebuiltAppConfig"].get("model_list", []), user, store=api)

    def __contains__(self, model_id: str) -> bool:
        return model_id in self._models

    def __len__(self) -> int:
        return len(self._models)

    def get(self, model_id: str) -> ModelInfo:
        try:
            return self._models[model_id]
        except KeyError:
            raise ModelNotFound(f"{model_id!r} is not in the catalog ({len(self._models)} models)") from None

    def all(self) -> list[ModelInfo]:
        return list(self._models.values())

    def search(self, text: str = "", *, sort: str = "name") -> list[ModelInfo]:
        """Models whose id contains every word of ``text`` (case-insensitive), sorted by ``sort``:
        ``name``, ``vram`` (smallest first) or ``context`` (largest first)."""
        words = text.lower().split()
        found = [m for m in self._models.values() if all(w in m.id.lower() for w in words)]
        keys = {"name": lambda m: m.id.lower(),
                "vram": lambda m: (m.vram_mb is None, m.vram_mb or 0.0, m.id.lower()),
                "context": lambda m: (-m.context_window, m.id.lower())}
        if sort not in keys:
            raise UsageError(f"sort must be one of {', '.join(keys)}; got {sort!r}")
        return sorted(found, key=keys[sort])

    async def add(self, record: dict[str, Any]) -> ModelInfo:
        """Add (or replace) a user model; it is stored before this returns. A prebuilt id is refused."""
        record = validate_record(record)
        existing = self._models.get(record["model_id"])
        if existing is not None and existing.source == "prebuilt":
            raise InvalidRequest(f"{record['model_id']!r} is a prebuilt model; pick another id", param="model_id")
        await self._store.kv_put(USER_STORE, record["model_id"], record)
        info = ModelInfo.from_record(record, "user")
        self._models[info.id] = info
        return info

    async def remove(self, model_id: str) -> None:
        """Forget a user model (its downloaded files are the manager's to delete)."""
        info = self.get(model_id)
        if info.source != "user":
            raise UsageError(f"{model_id!r} is a prebuilt model and cannot be removed from the catalog")
        await self._store.kv_delete(USER_STORE, model_id)
        del self._models[model_id]

    def app_config(self, **cache_options: Any) -> dict[str, Any]:
        """The ``appConfig`` for web-llm: every model's record, plus the cache backend options."""
        return {"model_list": [m.record for m in self._models.values()], **cache_options}

    def fit(self, model: ModelInfo, gpu: Any, *, largest_tensor: int | None = None) -> Fit:
        """Whether ``model`` runs on the GPU that ``gpu`` (an :class:`app.runtime.WebGPUReport`)
        describes. ``largest_tensor`` (bytes, from the tensor manifest) is checked against the
        adapter's buffer limits once known."""
        if not gpu.available:
            return Fit(False, ("this page has no WebGPU adapter",))
        reasons = []
        missing = model.required_features - gpu.features
        for feature in sorted(missing):
            reasons.append(f"needs {feature}, which this GPU/browser does not offer")
        if largest_tensor is not None and not gpu.fits(buffer_bytes=largest_tensor):
            from app.runtime import format_bytes

            reasons.append(f"a {format_bytes(largest_tensor)} weight exceeds this adapter's buffer limit")
        notes = []
        if model.vram_mb is not None:
            notes.append(f"needs about {model.vram_mb / 1024:.1f} GiB of GPU memory; browsers do not report "
                         "how much this GPU has")
        return Fit(not reasons, tuple(reasons), tuple(notes))
