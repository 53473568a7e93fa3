"""A model of the user's own, from what they type in the Models panel's "Add your own model" form.

    record = build_record("mlc-ai/Qwen3-0.6B-q4f16_1-MLC", "https://host/libs/Qwen3-0.6B-webgpu.wasm")
    info, plan = await manager.add_model(record, gpu)   # checked against the network and the GPU first

The model may be given as an MLC model folder URL (``https://host/org/name``, with or without
``/resolve/<rev>/``) or as a Hugging Face repo id (``org/name``, resolved to
``https://huggingface.co/org/name``; web-llm adds ``resolve/main/``). The library is an absolute
http(s) URL (the form suggests the vendored web-llm release's own libraries). Plain Python:
unit-tested under CPython.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from app.errors import InvalidRequest
from app.models.catalog import validate_record

HF_REPO = re.compile(r"(?P<org>[A-Za-z0-9][\w.-]{0,95})/(?P<name>[A-Za-z0-9][\w.-]{0,95})")
RESOLVE = re.compile(r"/resolve/[^/]+/?$")


def _url(text: str, field: str, what: str) -> str:
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidRequest(f"{what} must be an http(s) URL or a Hugging Face repo id (org/name); got {text!r}",
                             param=field)
    if parts.username or parts.password or parts.query or parts.fragment:
        raise InvalidRequest(f"{what} must not carry user:password@, ?query or #fragment", param=field)
    return text


def model_url_from(source: str) -> str:
    """The model folder URL for a URL or a Hugging Face repo id."""
    source = source.strip()
    if not source:
        raise InvalidRequest("the model's folder URL (or Hugging Face repo id) is missing", param="model")
    if "://" not in source and HF_REPO.fullmatch(source):
        return f"https://huggingface.co/{source}"
    return _url(source, "model", "the model").rstrip("/")


def default_id(model_url: str) -> str:
    """The model id a folder suggests: its last path segment (``resolve/<rev>`` left out)."""
    path = RESOLVE.sub("", urlsplit(model_url).path).rstrip("/")
    return path.rsplit("/", 1)[-1]


def build_record(source: str, lib: str, *, model_id: str = "", context_window: str | int | None = None,
                 vram_mb: str | float | None = None) -> dict[str, Any]:
    """A web-llm model record from the form's fields, checked field by field (InvalidRequest)."""
    model_url = model_url_from(source)
    lib = lib.strip()
    if not lib:
        raise InvalidRequest("the model library URL (.wasm) is missing", param="model_lib")
    _url(lib, "model_lib", "the model library")
    record: dict[str, Any] = {"model_id": (model_id or "").strip() or default_id(model_url), "model": model_url,
                              "model_lib": lib}
    if context_window not in (None, ""):
        try:
            window = int(str(context_window).strip())
        except ValueError:
            raise InvalidRequest(f"the context window must be a whole number of tokens; got {context_window!r}",
                                 param="overrides.context_window_size") from None
        record["overrides"] = {"context_window_size": window}
    if vram_mb not in (None, ""):
        try:
            record["vram_required_MB"] = float(str(vram_mb).strip())
        except ValueError:
            raise InvalidRequest(f"the GPU memory must be a number of MB; got {vram_mb!r}",
                                 param="vram_required_MB") from None
    return validate_record(record)
