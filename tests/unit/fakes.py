"""A stand-in for the web-llm engine bridge (``app.ffi.engine``, its :class:`EngineBridge` Protocol),
for CPython unit tests. tests/unit/test_bridge_contract.py checks it has the bridge's shape.

    api = FakeEngineApi(handler=lambda request: "Hello there")
    backend = WebLLMBackend(engine_api=api)
    await backend.load(LLAMA)
    ...
    api.names()          # ["webllm_exports", "create_engine", "probe_webgpu", "engine_reload", ...]

It has the functions ``WebLLMBackend`` calls on ``app.ffi.engine`` (``webllm_exports``, ``probe_webgpu``,
``create_engine``, ``engine_reload``, ``engine_unload``, ``engine_set_app_config``, ``engine_interrupt``,
``engine_chat``, ``ChunkIterator``) and answers with the shapes web-llm 0.2.86 produces (read from its
``lib/index.js``: ``chatCompletion``, ``makeStreamDeltaChunk``, ``makeStreamFinalChunk``,
``makeStreamUsageChunk``, ``getToolCallFromOutputMessage``). Engine failures are raised the way
``app.ffi`` raises them: the worker's ``"<ErrorName>: <message>"`` turned into a typed error by
:func:`app.errors.from_engine_message`.

Every call is recorded in ``calls`` (name + arguments), so a test can assert that nothing was sent.

Replies come from ``handler(request_dict) -> str`` (default :func:`echo`) and stream word by word.
Streams are paced by their consumer: a chunk is produced only when ``__anext__`` asks for it, and
each ``__anext__`` makes one pass through the event loop, as awaiting a JS promise across the
Pyodide bridge does (so other tasks get their turn between chunks, as in the browser). With
``api.paused = True`` a new stream waits at its ``gate`` (an ``asyncio.Event``) before its first
chunk; ``stream.waiting`` is set while it waits, ``stream.gate.set()`` lets it go.
``engine_interrupt`` makes the running stream's next chunk the final one, finish_reason "abort".
``api.crash(handle)`` kills a worker as static/bridge/engine.js sees it: ``engine_failure`` says why,
and every call on it, the running stream's next chunk included, fails with EngineCrashed at once.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import json
import re
import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from app.errors import from_engine_message

VERSION = "0.2.86"  # the npm version (static/vendor/VERSIONS.json)
MODEL_VERSION = "v0_2_86/base"  # web-llm's `modelVersion`: the model-library folder, not the npm version
LIB_PREFIX = "https://raw.githubusercontent.com/mlc-ai/binary-mlc-llm-libs/main/web-llm-models/"

LLAMA = "Llama-3.2-1B-Instruct-q4f32_1-MLC"
QWEN_F16 = "Qwen2.5-0.5B-Instruct-q4f16_1-MLC"
PHI_1K = "Phi-3.5-mini-instruct-q4f32_1-MLC-1k"
HERMES = "Hermes-3-Llama-3.1-8B-q4f32_1-MLC"
PHI_VISION = "Phi-3.5-vision-instruct-q4f32_1-MLC"  # model_type 2 (VLM)


def _record(model_id: str, hf_name: str, lib: str, vram: float, context: int, low: bool) -> dict[str, Any]:
    return {"model": f"https://huggingface.co/mlc-ai/{hf_name}", "model_id": model_id,
            "model_lib": f"{LIB_PREFIX}{MODEL_VERSION}/{lib}", "vram_required_MB": vram,
            "low_resource_required": low, "overrides": {"context_window_size": context}}


# Records as in web-llm 0.2.86's prebuiltAppConfig.model_list.
MODEL_LIST = [
    _record(LLAMA, LLAMA, "Llama-3.2-1B-Instruct-q4f32_1_cs1k-webgpu.wasm", 1128.82, 4096, True),
    _record(QWEN_F16, QWEN_F16, "Qwen2-0.5B-Instruct-q4f16_1_cs1k-webgpu.wasm", 944.62, 4096, True),
    _record(PHI_1K, "Phi-3.5-mini-instruct-q4f32_1-MLC", "Phi-3.5-mini-instruct-q4f32_1_cs1k-webgpu.wasm",
            3179.12, 1024, True),
    _record(HERMES, HERMES, "Llama-3_1-8B-Instruct-q4f32_1_cs1k-webgpu.wasm", 5779.27, 4096, False),
    {**_record(PHI_VISION, PHI_VISION, "Phi-3.5-vision-instruct-q4f32_1-ctx4k_cs2k-webgpu.wasm", 5879.84, 4096,
               True), "model_type": 2},
]
FUNCTION_CALLING_IDS = [HERMES]

TIMINGS = {"e2e_latency_s": 0.25, "prefill_tokens_per_s": 400.0, "decode_tokens_per_s": 40.0,
           "time_to_first_token_s": 0.05, "time_per_output_token_s": 0.025}


def text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if p.get("type") == "text")
    return ""


def echo(request: dict[str, Any]) -> str:
    """The default reply: ``"Echo: <last message text>"``."""
    return f"Echo: {text_of(request['messages'][-1]['content'])}"


def words(text: str) -> list[str]:
    """The fake model's tokens: words with their surrounding whitespace; they join back to ``text``."""
    return re.findall(r"\s*\S+\s*", text)


@types.coroutine
def _bridge_crossing():
    """One pass through the event loop, as every await of a JS promise from Pyodide is. It waits
    for nothing; it only lets other ready tasks run, as they would in the browser."""
    yield


@dataclass(frozen=True)
class Call:
    name: str
    args: tuple[Any, ...]


class FakeEngineHandle:
    """What ``create_engine`` returns: opaque to the backend, which only calls ``close()``."""

    def __init__(self, api: FakeEngineApi, app_config: dict[str, Any],
                 on_progress: Callable[[dict[str, Any]], None] | None) -> None:
        self._api = api
        self.app_config = app_config
        self.on_progress = on_progress
        self.loaded: str | None = None
        self.embedding: str | None = None  # the embedding model loaded beside it
        self.closed = False
        self.failure: str | None = None  # why the worker died (api.crash), None while it lives

    def close(self) -> None:
        self._api._log("EngineHandle.close")
        self.closed = True
        self.loaded = None
        self.failure = self.failure or "the model's worker was closed"
        if self._api.running is not None and self._api.running.handle is self:
            self._api.running.gate.set()  # a stream waiting on a dead worker fails at once

    def check_alive(self) -> None:
        if self.failure is not None:
            raise from_engine_message(f"EngineCrashedError: {self.failure}")


def bag_of_words(text: str, dims: int = 384) -> list[float]:
    """The engine double's embedding (tests/browser/double/engine_double.js bagOfWordsVector)."""
    vector = [0.0] * dims
    for word in re.findall(r"[^\W_]+", text.lower()):
        hash_ = 0x811C9DC5
        for byte in word.encode():
            hash_ = ((hash_ ^ byte) * 0x01000193) & 0xFFFFFFFF
        vector[hash_ % dims] += 1
    norm = sum(x * x for x in vector) ** 0.5
    return [x / norm for x in vector] if norm else vector


class FakeEngineApi:
    """See the module docstring. ``reload_errors`` maps a model id to the error ``engine_reload``
    raises for it: an exception, or the worker's ``"<ErrorName>: <message>"`` text."""

    def __init__(self, handler: Callable[[dict[str, Any]], str] | None = None, *, version: str = VERSION,
                 model_version: str = MODEL_VERSION, model_list: list[dict[str, Any]] | None = None,
                 function_calling_ids: list[str] | None = None, gpu_features: tuple[str, ...] = ("shader-f16",),
                 reload_errors: dict[str, BaseException | str] | None = None) -> None:
        self.handler = handler or echo
        self.version = version
        self.model_version = model_version
        self.model_list = copy.deepcopy(MODEL_LIST if model_list is None else model_list)
        self.function_calling_ids = list(FUNCTION_CALLING_IDS if function_calling_ids is None
                                         else function_calling_ids)
        self.gpu_features = gpu_features
        self.reload_errors = dict(reload_errors or {})
        self.calls: list[Call] = []
        self.handles: list[FakeEngineHandle] = []
        self.streams: list[FakeChunkIterator] = []
        self.running: FakeChunkIterator | None = None  # the stream web-llm is generating for
        self.paused = False  # new streams wait at their gate before the first chunk
        self._ids = itertools.count(1)

    # ------------------------------------------------------------------ the call log

    def _log(self, name: str, *args: Any) -> None:
        # Plain data is copied (later changes by the caller must not rewrite the log); handles are not.
        self.calls.append(Call(name, tuple(copy.deepcopy(a) if isinstance(a, (dict, list)) else a
                                           for a in args)))

    def crash(self, handle: FakeEngineHandle | None = None,
              cause: str = "the model's worker stopped (crashed, ran out of memory or was terminated)") -> None:
        """The worker of ``handle`` (default: the newest) dies, as out of memory or terminate() do."""
        handle = handle or self.handles[-1]
        handle.failure = cause
        handle.loaded = None
        if self.running is not None and self.running.handle is handle:
            self.running.gate.set()

    def engine_failure(self, handle: FakeEngineHandle) -> str | None:
        return handle.failure  # not logged: it asks the page, nothing crosses to the worker

    def names(self, since: int = 0) -> list[str]:
        return [c.name for c in self.calls[since:]]

    def sent(self, since: int = 0) -> list[dict[str, Any]]:
        """The chat requests the engine received (engine_chat and streams), in order."""
        return [c.args[1] for c in self.calls[since:] if c.name in ("engine_chat", "ChunkIterator")]

    # ------------------------------------------------------------------ ffi's functions

    async def webllm_exports(self, module_url: str, versions_url: str = "static/vendor/VERSIONS.json") -> dict:
        self._log("webllm_exports", module_url, versions_url)
        await _bridge_crossing()
        return {"version": self.version, "modelVersion": self.model_version,
                "prebuiltAppConfig": {"model_list": copy.deepcopy(self.model_list)},
                "functionCallingModelIds": list(self.function_calling_ids)}

    async def probe_webgpu(self) -> dict[str, Any]:
        self._log("probe_webgpu")
        await _bridge_crossing()
        return {"api": True, "adapter": True, "error": None, "fallback": False,
                "info": {"vendor": "fake", "architecture": "test", "device": "", "description": ""},
                "limits": {"maxBufferSize": 2**31, "maxStorageBufferBindingSize": 2**31},
                "features": list(self.gpu_features)}

    async def create_engine(self, module_url: str, worker_url: str, app_config: dict[str, Any],
                            on_progress: Callable[[dict[str, Any]], None] | None = None) -> FakeEngineHandle:
        self._log("create_engine", module_url, worker_url, app_config)
        await _bridge_crossing()
        handle = FakeEngineHandle(self, copy.deepcopy(app_config), on_progress)
        self.handles.append(handle)
        return handle

    async def engine_reload(self, handle: FakeEngineHandle, model_id: str | list[str],
                            chat_opts: dict[str, Any] | None = None) -> None:
        """web-llm's reload: unload everything, then load each id in order (a list: several models)."""
        self._log("engine_reload", handle, model_id, chat_opts)
        handle.check_alive()
        handle.loaded = None  # web-llm unloads what it had first
        handle.embedding = None
        ids = [model_id] if isinstance(model_id, str) else list(model_id)
        known = {m["model_id"]: m for m in handle.app_config.get("model_list", ())}
        for one in ids:
            if one not in known:
                raise from_engine_message(
                    f"ModelNotFoundError: Cannot find model record in appConfig for {one}. Please check if "
                    "the model ID is correct and included in the model_list configuration.")
            self._progress(handle, 0.0, "Start to fetch params")
            await _bridge_crossing()
            error = self.reload_errors.get(one)
            if isinstance(error, str):
                raise from_engine_message(error)
            if error is not None:
                raise error
            self._progress(handle, 1.0, f"Finish loading on WebGPU - {one}")
            if known[one].get("model_type") == 1:
                handle.embedding = one
            else:
                handle.loaded = one

    async def engine_embed(self, handle: FakeEngineHandle, request: dict[str, Any]) -> list[list[float]]:
        """``embeddings.create``: each text as a normalised hashed bag of words (like the browser double)."""
        self._log("engine_embed", handle, request)
        handle.check_alive()
        await _bridge_crossing()
        if handle.embedding is None or request.get("model") not in (None, handle.embedding):
            raise from_engine_message(
                "ModelNotLoadedError: Model not loaded before trying to complete EmbeddingCreateParams.")
        return [bag_of_words(text) for text in request["input"]]

    @staticmethod
    def _progress(handle: FakeEngineHandle, progress: float, text: str) -> None:
        if handle.on_progress is not None:
            handle.on_progress({"progress": progress, "timeElapsed": 0, "text": text})

    async def engine_unload(self, handle: FakeEngineHandle) -> None:
        self._log("engine_unload", handle)
        handle.check_alive()
        await _bridge_crossing()
        handle.loaded = None

    async def engine_set_app_config(self, handle: FakeEngineHandle, app_config: dict[str, Any]) -> None:
        self._log("engine_set_app_config", handle, app_config)
        handle.check_alive()
        await _bridge_crossing()
        handle.app_config = copy.deepcopy(app_config)

    async def engine_interrupt(self, handle: FakeEngineHandle) -> None:
        """web-llm's interruptGenerate: the running generation stops at its next step."""
        self._log("engine_interrupt", handle)
        handle.check_alive()
        if self.running is not None:
            self.running.interrupted = True
            self.running.gate.set()  # an interrupted generation does not wait for anything
        await _bridge_crossing()

    async def engine_chat(self, handle: FakeEngineHandle, request: dict[str, Any]) -> dict[str, Any]:
        """A non-streaming ``chat.completions.create``."""
        self._log("engine_chat", handle, request)
        handle.check_alive()
        await _bridge_crossing()
        model = self._check(handle, request)
        text = self.handler(copy.deepcopy(request))
        pieces, finish = self._limit(words(text), request)
        calls = None
        if request.get("tools") is not None and finish == "stop":
            finish = "tool_calls"
            calls = [{"id": str(i), "function": {"name": c["name"], "arguments": c["arguments"]},
                      "type": "function"} for i, c in enumerate(_tool_calls_of(text))]
        message = ({"content": None, "tool_calls": calls, "role": "assistant"}
                   if request.get("tools") is not None else {"content": "".join(pieces), "role": "assistant"})
        return {"id": f"chatcmpl-{next(self._ids)}", "object": "chat.completion", "created": 1_700_000_000,
                "model": model,
                "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
                "usage": self._usage(request, len(pieces))}

    def ChunkIterator(self, handle: FakeEngineHandle, request: dict[str, Any]) -> FakeChunkIterator:
        """A streaming ``chat.completions.create``, as ``app.ffi.ChunkIterator``."""
        self._log("ChunkIterator", handle, request)
        stream = FakeChunkIterator(self, handle, request, f"chatcmpl-{next(self._ids)}")
        self.streams.append(stream)
        return stream

    # ------------------------------------------------------------------ the engine's side

    def _check(self, handle: FakeEngineHandle, request: dict[str, Any]) -> str:
        """web-llm's own checks of a chat request (getLLMStates, postInitAndCheckFields)."""
        if handle.closed or handle.loaded is None:
            raise from_engine_message(
                "ModelNotLoadedError: Model not loaded before trying to complete ChatCompletionRequest.")
        model = request.get("model") or handle.loaded
        if model != handle.loaded:
            raise from_engine_message(f"SpecifiedModelNotFoundError: Specified model {model} for "
                                      f"ChatCompletionRequest is not found in loaded models.")
        if request.get("tools") is not None and model not in self.function_calling_ids:
            raise from_engine_message(
                f"UnsupportedModelIdError: {model} is not supported for ChatCompletionRequest.tools. Currently, "
                f"models that support function calling are: {', '.join(self.function_calling_ids)}")
        vlm = any(r["model_id"] == model and r.get("model_type") == 2 for r in self.model_list)
        for m in request["messages"]:
            if m["role"] == "user" and not isinstance(m.get("content"), str):
                if not vlm:
                    raise from_engine_message(
                        "UserMessageContentErrorForNonVLM: The model loaded is not of type ModelType.VLM "
                        f"(vision-language model). Loaded modelId: {model}")
                if sum(p.get("type") == "text" for p in m["content"]) > 1:
                    raise from_engine_message("MultipleTextContentError: Each message can have at most one "
                                              "text contentPart, but received more than 1.")
                for part in m["content"]:
                    url = part.get("image_url", {}).get("url", "") if part.get("type") == "image_url" else None
                    if url is not None and not (url.startswith("data:image") or url.startswith("http")):
                        raise from_engine_message(f"UnsupportedImageURLError: image_url.url should start with "
                                                  f"\"data:image\" for base64, or with \"http\", but got: {url}")
            if m["role"] == "assistant" and not isinstance(m.get("content"), str):
                raise from_engine_message("ContentTypeError: assistant's content must be a string")
        schema = (request.get("response_format") or {}).get("schema")
        if schema is not None and not isinstance(schema, str):
            raise from_engine_message("InvalidResponseFormatError: response_format.schema must be a string")
        if request.get("stream") and (request.get("n") or 1) > 1:
            raise from_engine_message("StreamingCountError: When streaming, `n` cannot be > 1.")
        return model

    @staticmethod
    def _limit(pieces: list[str], request: dict[str, Any]) -> tuple[list[str], str]:
        limit = request.get("max_tokens")
        if limit is not None and len(pieces) > limit:
            return pieces[:limit], "length"
        return pieces, "stop"

    @staticmethod
    def _usage(request: dict[str, Any], completion_tokens: int) -> dict[str, Any]:
        prompt = sum(len(text_of(m.get("content")).split()) + 2 for m in request["messages"]) + 1
        extra = dict(TIMINGS)
        if (request.get("response_format") or {}).get("type") == "json_object":
            extra.update(grammar_init_s=0.01, grammar_per_token_s=0.001)
        return {"prompt_tokens": prompt, "completion_tokens": completion_tokens,
                "total_tokens": prompt + completion_tokens, "extra": extra}

    def _generate(self, stream: FakeChunkIterator):
        """The chunks of one streamed answer, as web-llm's asyncGenerate yields them."""
        request = stream.request
        model = self._check(stream.handle, request)
        text = self.handler(copy.deepcopy(request))
        pieces, finish = self._limit(words(text), request)
        head = {"id": stream.id, "model": model, "object": "chat.completion.chunk", "created": 1_700_000_000}
        produced = 0
        for piece in pieces:
            if stream.interrupted:
                break
            produced += 1
            yield {**head, "choices": [{"delta": {"content": piece, "role": "assistant"}, "finish_reason": None,
                                        "index": 0, "logprobs": None}]}
        if stream.interrupted:
            finish = "abort"
        native = request.get("tools") is not None
        delta: dict[str, Any] = {}
        if native:
            calls = None
            if finish == "stop":
                finish = "tool_calls"
                calls = [{"index": i, "function": {"name": c["name"], "arguments": c["arguments"]},
                          "type": "function"} for i, c in enumerate(_tool_calls_of(text))]
            delta = {"role": "assistant", "tool_calls": calls}
        yield {**head, "choices": [{"delta": delta, "finish_reason": finish, "index": 0}]}
        if (request.get("stream_options") or {}).get("include_usage") is True:
            yield {**head, "choices": [], "usage": self._usage(request, produced)}


def _tool_calls_of(text: str) -> list[dict[str, str]]:
    """web-llm's getToolCallFromOutputMessage: the model's JSON array of calls, arguments as JSON text."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise from_engine_message(f"ToolCallOutputParseError: {text} ({exc})") from None
    if not isinstance(value, list):
        raise from_engine_message("ToolCallOutputInvalidTypeError: expected an array")
    out = []
    for call in value:
        if not isinstance(call, dict) or "name" not in call or "arguments" not in call:
            raise from_engine_message(f"ToolCallOutputMissingFieldsError: name, arguments missing in {call}")
        out.append({"name": call["name"], "arguments": json.dumps(call["arguments"])})
    return out


class FakeChunkIterator:
    """One streamed answer, produced chunk by chunk as the consumer asks (like app.ffi.ChunkIterator,
    the request reaches the engine at the first ``__anext__``)."""

    def __init__(self, api: FakeEngineApi, handle: FakeEngineHandle, request: dict[str, Any], stream_id: str):
        self.api = api
        self.handle = handle
        self.request = copy.deepcopy(request)
        self.id = stream_id
        self.interrupted = False
        self.done = False
        self.closed = False
        self.gate = asyncio.Event()
        if not api.paused:
            self.gate.set()
        self.waiting = asyncio.Event()  # set while the stream waits at its gate
        self.chunks: list[dict[str, Any]] = []  # what the consumer received
        self._source: Any = None
        self._shape: dict[str, Any] | None = None  # the last whole chunk, its text left out

    def __aiter__(self) -> FakeChunkIterator:
        return self

    async def __anext__(self) -> dict[str, Any]:
        self.api._log("ChunkIterator.__anext__", self.id)
        if self.done:
            raise StopAsyncIteration
        if self._source is None:
            self.api.running = self
        await _bridge_crossing()
        if not self.gate.is_set():
            self.waiting.set()
            await self.gate.wait()
            self.waiting.clear()
        try:
            self.handle.check_alive()
            if self._source is None:
                self._source = self.api._generate(self)
            chunk = next(self._source)
        except StopIteration:
            self._end()
            raise StopAsyncIteration from None
        except BaseException:
            self._end()
            raise
        self.chunks.append(chunk)
        return self._encode(chunk)

    def _encode(self, chunk: dict[str, Any]) -> dict[str, Any] | str:
        """As static/bridge/engine.js ``chunkEncoder`` sends it: a chunk like the one before but for
        its text is that text alone."""
        choices = chunk.get("choices") or []
        choice = choices[0] if len(choices) == 1 else {}
        text = (choice.get("delta") or {}).get("content")
        if (not isinstance(text, str) or chunk.get("usage") or choice.get("finish_reason") is not None
                or choice.get("logprobs") is not None):
            self._shape = None
            return copy.deepcopy(chunk)
        rest = copy.deepcopy(chunk)
        rest["choices"][0]["delta"]["content"] = ""
        if rest == self._shape:
            return text
        self._shape = rest
        return copy.deepcopy(chunk)

    def buffered(self) -> int:
        return 0  # a chunk is made only when asked for

    async def aclose(self) -> None:
        """ffi's aclose waits until web-llm's stream has ended (at once after an interrupt)."""
        self.api._log("ChunkIterator.aclose", self.id)
        await _bridge_crossing()
        self.closed = True
        self._end()

    def _end(self) -> None:
        self.done = True
        if self.api.running is self:
            self.api.running = None


async def within(coro: Any, seconds: float = 10.0) -> Any:
    """Run ``coro`` with a deadline, so a deadlock fails the test instead of hanging the suite."""
    return await asyncio.wait_for(coro, seconds)


class FakeChannels:
    """``app.ffi.channel`` between tabs in one process: what one ``post``s reaches the handlers of the
    other channels of the same name (never its own) on a later loop turn, as a BroadcastChannel
    delivers; messages cross as JSON text."""

    def __init__(self) -> None:
        self._open: dict[str, list[Any]] = {}
        self.sent: list[dict[str, Any]] = []

    def open_channel(self, name: str, handler: Any) -> tuple[Any, Any]:
        import asyncio

        members = self._open.setdefault(name, [])
        me = [handler]
        members.append(me)

        def post(message: dict[str, Any]) -> None:
            if me not in members:
                return
            text = json.dumps(message)
            self.sent.append(json.loads(text))
            for other in list(members):
                if other is not me:
                    asyncio.get_running_loop().call_soon(lambda h=other[0]: h(json.loads(text)))

        def close() -> None:
            if me in members:
                members.remove(me)

        return post, close


class FakeImages:
    """``app.ffi.images`` under CPython: ``picked`` is what the next file pick gives; ``drop(files)``
    plays a paste or drop onto the watched target. Images are "resized" by arithmetic only (the URL is
    kept), reading a PNG's size from its header as the page would from the decoded image."""

    TYPES = ("image/png", "image/jpeg", "image/webp", "image/gif")

    def __init__(self, picked: list[dict[str, Any]] | None = None) -> None:
        self.picked = list(picked or [])
        self.handlers: list[Callable[[list[dict[str, Any]]], None]] = []

    async def read_chosen_images(self, file_input: Any, max_side: int = 1344,
                                 max_bytes: int = 20 * 1024 * 1024) -> list[dict[str, Any]]:
        await _bridge_crossing()
        picked, self.picked = self.picked, []
        return picked

    async def watch_images(self, target: Any, handler: Callable[[list[dict[str, Any]]], None],
                           max_side: int = 1344, max_bytes: int = 20 * 1024 * 1024) -> Callable[[], None]:
        await _bridge_crossing()
        self.handlers.append(handler)
        return lambda: self.handlers.remove(handler) if handler in self.handlers else None

    def drop(self, images: list[dict[str, Any]]) -> None:
        for handler in list(self.handlers):
            handler(images)

    async def prepare_image_url(self, url: str, name: str = "image", max_side: int = 1344,
                                max_bytes: int = 20 * 1024 * 1024) -> dict[str, Any]:
        import base64
        import struct

        await _bridge_crossing()
        head, _, payload = url.partition(",")
        kind = head[5:].split(";")[0]
        if not head.startswith("data:") or not head.endswith(";base64"):
            return {"name": name, "error": f"{name} is not a base64 data: URL"}
        if kind not in self.TYPES:
            return {"name": name, "error": f"{name} is {kind or 'not an image'}; PNG, JPEG, WebP and GIF images "
                                          "can be attached"}
        data = base64.b64decode(payload)
        if len(data) > max_bytes:
            return {"name": name, "error": f"{name} is too large"}
        if kind != "image/png" or data[12:16] != b"IHDR":
            return {"name": name, "error": f"{name} could not be read as an image (damaged, or not what its name "
                                          "says)"}
        width, height = struct.unpack(">II", data[16:24])
        scale = min(1.0, max_side / max(width, height))
        return {"name": name, "type": "image/png", "width": max(1, round(width * scale)),
                "height": max(1, round(height * scale)), "url": url}


def make_png(width: int, height: int, rgb: tuple[int, int, int] = (200, 60, 40)) -> bytes:
    """A real PNG of one colour (what tests attach; any browser decodes it)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\0" + bytes(rgb) * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))
