"""Any OpenAI-compatible endpoint (OpenAI, Anthropic and Gemini compatibility endpoints, OpenRouter,
Ollama, LM Studio, vLLM, llama.cpp server, MLC-LLM serve) through the browser's ``fetch``.

    backend = OpenAICompatBackend(preset="openai", api_key=key, model="gpt-4o-mini")
    backend = OpenAICompatBackend(base_url="http://127.0.0.1:8080/v1", model="local")  # llama.cpp
    client = Client(backend)

Streaming uses SSE, framed by the vendored ``eventsource-parser``. HTTP failures become the same
typed errors as the local backend (``AuthenticationFailed``, ``RateLimited`` with ``retry_after``,
``ContextWindowExceeded``, ``ServerError``, ``BackendUnreachable``).

The API key lives in this object's memory only; it is sent in the ``Authorization`` header to
``base_url`` and nowhere else, and it never appears in ``repr``, errors or logs. With
``remember_key=True`` (the user's opt-in) it is also saved for ``base_url``'s origin (``app.keys``),
and a backend made later for that origin without ``api_key`` uses it::

    OpenAICompatBackend(preset="openai", api_key=key, model="gpt-4o-mini", remember_key=True)  # saved on first use
    OpenAICompatBackend(preset="openai", model="gpt-4o-mini", remember_key=True)  # after a reload: the saved key
    await backend.forget_key()
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

from app.backends.base import Capabilities
from app.errors import (
    Aborted,
    BackendUnreachable,
    InvalidRequest,
    ModelNotFound,
    ServerError,
    UsageError,
    from_http_status,
)
from app.ffi import http as http_bridge
from app.ffi.http import HttpBridge
from app.ir import ChatCompletion, ChatCompletionChunk, ChoiceDelta, ChunkChoice
from app.params import ChatRequest


@dataclass(frozen=True)
class Preset:
    """An endpoint users actually have: where it is and what browsers must send to it."""

    label: str
    base_url: str
    needs_key: bool = True
    headers: dict[str, str] = field(default_factory=dict)
    note: str = ""
    # How the server takes a JSON Schema: OpenAI's {"type": "json_schema", "json_schema": {...}}, or
    # {"type": "json_object", "schema": {...}} (llama-cpp-python's server, like web-llm).
    structured_output: str = "json_schema"
    # Whether the service takes image_url content parts (its vision models do; a text-only model it
    # serves answers with its own error). Local servers vary by model: say vision=True for one that sees.
    vision: bool = False


PRESETS: dict[str, Preset] = {
    "openai": Preset("OpenAI", "https://api.openai.com/v1", vision=True),
    # Anthropic answers browsers only with this header (its OpenAI SDK compatibility endpoint).
    "anthropic": Preset("Anthropic", "https://api.anthropic.com/v1",
                        headers={"anthropic-dangerous-direct-browser-access": "true"}, vision=True),
    "gemini": Preset("Google Gemini", "https://generativelanguage.googleapis.com/v1beta/openai", vision=True),
    "openrouter": Preset("OpenRouter", "https://openrouter.ai/api/v1", headers={"X-Title": "WebGPU Python chat"},
                         vision=True),
    "ollama": Preset("Ollama", "http://localhost:11434/v1", needs_key=False,
                     note="start Ollama with OLLAMA_ORIGINS set to this page's origin (CORS)"),
    "lmstudio": Preset("LM Studio", "http://localhost:1234/v1", needs_key=False,
                       note="enable CORS in LM Studio's server settings"),
    "vllm": Preset("vLLM", "http://localhost:8000/v1", needs_key=False,
                   note="run with --allowed-origins for this page's origin"),
    "llamacpp": Preset("llama.cpp server", "http://localhost:8080/v1", needs_key=False,
                       structured_output="json_object"),
    "mlc": Preset("MLC-LLM serve", "http://127.0.0.1:8000/v1", needs_key=False,
                  note="run with --allow-origins for this page's origin"),
}

# Fields only web-llm understands; OpenAI-compatible servers may reject them.
_WEBLLM_ONLY = ("repetition_penalty", "ignore_eos", "extra_body")
_LOOPBACK = {"localhost", "127.0.0.1", "::1", "[::1]"}


def _check_base_url(url: str) -> str:
    from app.config import check_endpoint_url

    return check_endpoint_url(url)


class OpenAICompatBackend:
    """Chat with an OpenAI-compatible endpoint. See the module docstring."""

    def __init__(self, *, preset: str | None = None, base_url: str | None = None, api_key: str | None = None,
                 model: str | None = None, headers: dict[str, str] | None = None, name: str | None = None,
                 context_window: int | None = None, structured_output: str | None = None,
                 on_device: bool | None = None, remember_key: bool = False, keys: Any = None,
                 vision: bool | None = None, http: HttpBridge = http_bridge) -> None:
        if preset is not None and preset not in PRESETS:
            raise UsageError(f"unknown preset {preset!r}; one of {', '.join(PRESETS)}")
        chosen = PRESETS.get(preset or "")
        if base_url is None and chosen is None:
            raise UsageError("give a preset or a base_url")
        self.base_url = _check_base_url(base_url or chosen.base_url)  # type: ignore[union-attr]
        if chosen is not None and chosen.needs_key and not api_key and not remember_key:
            raise UsageError(f"{chosen.label} needs an API key")
        self._api_key = api_key
        self.remember_key = remember_key
        self._keys = keys
        self._key_synced = not remember_key  # saved / restored once, before the first request
        self._headers = {**(chosen.headers if chosen else {}), **(headers or {})}
        self.model = model
        self.name = name or preset or urlsplit(self.base_url).netloc
        self.context_window = context_window
        self.structured_output = structured_output or (chosen.structured_output if chosen else "json_schema")
        if self.structured_output not in ("json_schema", "json_object"):
            raise UsageError("structured_output must be 'json_schema' or 'json_object'")
        self._on_device = on_device
        self.vision = vision if vision is not None else bool(chosen and chosen.vision)
        self._http = http

    def __repr__(self) -> str:
        key = "set" if self._api_key else "none"
        return f"OpenAICompatBackend(name={self.name!r}, base_url={self.base_url!r}, model={self.model!r}, key={key})"

    @property
    def on_device(self) -> bool:
        """True for a server on this machine (loopback, unless told otherwise): its traffic does not
        leave the device, so private and offline requests may use it."""
        if self._on_device is not None:
            return self._on_device
        return urlsplit(self.base_url).hostname in _LOOPBACK

    def capabilities(self, model: str | None) -> Capabilities:
        return Capabilities(tools="native", json_schema=True, max_context=self.context_window,
                            local=self.on_device, vision=self.vision)

    # ------------------------------------------------------------------ the API key

    def _key_store(self) -> Any:
        if self._keys is None:
            from app.keys import KeyStore

            self._keys = KeyStore()
        return self._keys

    async def _sync_key(self) -> None:
        """With ``remember_key``: save the key given, or restore the one saved for this origin."""
        if self._key_synced:
            return
        if self._api_key:
            await self._key_store().save(self.base_url, self._api_key)
        else:
            self._api_key = await self._key_store().load(self.base_url)
            if self._api_key is None:  # asked to use a saved key: without one, say so rather than send
                from app.keys import origin_of

                raise UsageError(f"no API key is saved for {origin_of(self.base_url)}; give api_key")
        self._key_synced = True

    async def forget_key(self) -> None:
        """Drop the key from memory and, if it was saved, from storage."""
        self._api_key = None
        if self.remember_key:
            await self._key_store().forget(self.base_url)
            self._key_synced = False

    async def health(self, timeout: float = 3.0) -> None:
        """A cheap probe for the router: ``GET {base_url}/models`` within ``timeout`` seconds. Raises
        what a request would meet (BackendUnreachable, ServerError, AuthenticationFailed, ...); a 404
        passes: the endpoint answers, it just lists no models."""
        await self._sync_key()
        headers = dict(self._headers)
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        response = self._http.HttpStream(f"{self.base_url}/models", method="GET", headers=headers, body=None,
                                         sse=False)
        try:
            await asyncio.wait_for(response.__anext__(), timeout)
        except TimeoutError:
            response.cancel()
            raise BackendUnreachable(f"{self.name}: no answer to GET /models within {timeout:g}s") from None
        except ModelNotFound:
            pass
        finally:
            await response.aclose()

    # ------------------------------------------------------------------ requests

    def _body(self, request: ChatRequest) -> dict[str, Any]:
        body = request.to_openai()
        for key in _WEBLLM_ONLY:
            body.pop(key, None)
        if request.enable_thinking is not None:  # how vLLM and llama.cpp's server pass it to the template
            body["chat_template_kwargs"] = {"enable_thinking": request.enable_thinking}
        body["model"] = request.model or self.model
        if not body["model"]:
            raise InvalidRequest("model: this endpoint needs a model id (pass model= or set it on the backend)",
                                 param="model")
        fmt = body.get("response_format")
        if fmt and fmt.get("type") == "json_object" and "schema" in fmt:
            fmt["schema"] = json.loads(fmt["schema"])
        if fmt and fmt.get("type") == "json_object" and "schema" in fmt and self.structured_output == "json_schema":
            # web-llm's shape -> OpenAI's structured-output shape.
            body["response_format"] = {"type": "json_schema", "json_schema": {
                "name": "response", "schema": fmt["schema"], "strict": False}}
        return body

    def _request(self, body: dict[str, Any], *, sse: bool) -> Any:
        headers = {"Content-Type": "application/json", **self._headers}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        return self._http.HttpStream(f"{self.base_url}/chat/completions", method="POST", headers=headers,
                                     body=json.dumps(body), sse=sse)

    async def complete(self, request: ChatRequest) -> ChatCompletion:
        body = self._body(replace(request, stream=False, include_usage=False))
        await self._sync_key()
        response = self._request(body, sse=False)
        try:
            text = await response.__anext__()
        finally:
            await response.aclose()
        return ChatCompletion.from_dict(_json(text), backend=self.name)

    def stream(self, request: ChatRequest) -> OpenAICompatStream:
        body = self._body(request)

        async def send() -> Any:
            await self._sync_key()
            return self._request(body, sse=True)

        return OpenAICompatStream(send)


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        raise ServerError(f"the endpoint sent something that is not JSON: {text[:200]!r}", status=502) from None


class OpenAICompatStream:
    """One streamed answer. ``stop()``/``aclose()`` abort the fetch; the stream then ends with a final
    chunk whose finish_reason is "abort", like web-llm's."""

    def __init__(self, send: Callable[[], Awaitable[Any]]) -> None:
        self._send = send
        self._response: Any = None
        self._stopped = False
        self._ended = False
        self._last: ChatCompletionChunk | None = None

    async def start(self) -> None:
        """Prepare the request (the saved key, when remembered); it goes out with the first read."""
        if self._response is None and not self._stopped:
            self._response = await self._send()

    def __aiter__(self) -> OpenAICompatStream:
        return self

    async def __anext__(self) -> ChatCompletionChunk:
        if self._ended:
            raise StopAsyncIteration
        await self.start()
        if self._stopped:  # what was already received after stop() is dropped, as web-llm stops at once
            if self._response is not None:
                await self._response.aclose()
            return self._abort_chunk()
        try:
            data = await self._response.__anext__()
        except Aborted:
            if not self._stopped:
                raise
            return self._abort_chunk()
        except StopAsyncIteration:
            self._ended = True
            raise
        payload = _json(data)
        if isinstance(payload, dict) and "error" in payload:  # OpenRouter, Gemini: an error mid-stream
            await self.aclose()
            code = str((payload["error"] or {}).get("code", "")) if isinstance(payload["error"], dict) else ""
            raise from_http_status(int(code) if code.isdigit() else 500, data)
        chunk = ChatCompletionChunk.from_dict(payload)
        self._last = chunk
        return chunk

    def _abort_chunk(self) -> ChatCompletionChunk:
        self._ended = True
        last = self._last
        return ChatCompletionChunk(id=last.id if last else "", created=last.created if last else 0,
                                   model=last.model if last else "",
                                   choices=(ChunkChoice(index=0, delta=ChoiceDelta(), finish_reason="abort"),))

    async def stop(self) -> None:
        if not self._ended and not self._stopped:
            self._stopped = True
            if self._response is not None:
                self._response.cancel()

    async def aclose(self) -> None:
        await self.stop()
        self._ended = True
        if self._response is not None:
            await self._response.aclose()
