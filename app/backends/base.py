"""The narrow interface every backend implements, and what a backend can do.

A backend only translates and streams; validation happens before (``app.params``), policy
(retry, timeout, routing) around it. The router treats web-llm and cloud endpoints alike through
this protocol.

    class MyBackend:
        name = "mine"
        def capabilities(self, model): return Capabilities(local=False)
        async def complete(self, request): ...        # -> ChatCompletion
        def stream(self, request): ...                # -> ChunkStream
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from app.ir import ChatCompletion, ChatCompletionChunk
from app.params import ChatRequest


@dataclass(frozen=True)
class Capabilities:
    """What a backend offers for one model."""

    streaming: bool = True
    tools: str = "emulated"  # "native" (engine parses tool calls) | "emulated" (JSON schema) | "none"
    json_schema: bool = True  # grammar-constrained JSON output
    max_context: int | None = None  # tokens, when known
    seed: bool = True  # deterministic sampling with a seed
    local: bool = True  # runs on this device; nothing leaves it
    vision: bool = False


@runtime_checkable
class ChunkStream(Protocol):
    """An async iterator of chunks that owns its request: ``start()`` waits for the engine's turn
    and sends it; ``stop()`` asks the engine to stop (the stream then ends with finish_reason
    "abort"); ``aclose()`` stops and releases at once."""

    async def start(self) -> None: ...

    def __aiter__(self) -> AsyncIterator[ChatCompletionChunk]: ...

    async def __anext__(self) -> ChatCompletionChunk: ...

    async def stop(self) -> None: ...

    async def aclose(self) -> None: ...


@runtime_checkable
class Backend(Protocol):
    """Optional, read with ``getattr`` by the router: ``unavailable`` (str | None), why the backend
    cannot serve anything now (it is then skipped); ``loaded`` (None while a local model is not ready);
    ``async health()``, a cheap probe that raises the typed error a request would meet."""

    name: str

    def capabilities(self, model: str | None) -> Capabilities: ...

    async def complete(self, request: ChatRequest) -> ChatCompletion: ...

    def stream(self, request: ChatRequest) -> ChunkStream: ...
