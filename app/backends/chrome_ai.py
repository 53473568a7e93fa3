"""Chrome's built-in model through the Prompt API (``LanguageModel``), feature-detected.

    backend = ChromeAIBackend(on_progress=print)   # nothing is created or downloaded yet
    await backend.availability()                   # "unavailable" | "downloadable" | "downloading" | "available"
    await backend.load()                           # downloads the model if needed (progress 0..1), in a click handler
    client = Client(backend)                       # or Route(backend) in a Router: it is on-device

The interface followed is the one documented by the Prompt API explainer
(https://github.com/webmachinelearning/prompt-api, README.md at commit 04f5d0a2): ``availability(options)``
with its four states; ``create({initialPrompts, expectedInputs, expectedOutputs, signal, monitor})``
whose monitor fires ``downloadprogress`` events with ``loaded`` from 0 to 1; ``session.prompt()`` and
``session.promptStreaming()`` (a ReadableStream of text deltas) taking ``{signal, responseConstraint}``;
``session.contextUsage`` / ``session.contextWindow`` and ``measureContextUsage()`` (formerly
inputUsage / inputQuota / measureInputUsage); ``session.destroy()``. Its failures become app.errors
types: NotSupportedError -> FeatureUnsupported, QuotaExceededError -> ContextWindowExceeded,
AbortError -> Aborted, NetworkError -> ModelFetchFailed, NotAllowedError (a download needs a user
gesture) -> ModelNotDownloaded, SyntaxError (no output fits the schema) -> OutputParseError.

What the API does not have is done here, the same way for every answer:

- Each request gets a fresh session: the system message becomes ``initialPrompts``, the rest of the
  conversation the prompt, so answers do not depend on earlier requests.
- ``stop`` sequences and ``max_tokens`` are applied to the text as it arrives; when either ends the
  answer, the prompt is aborted (finish_reason "stop" or "length"). The API exposes no tokenizer, so
  the ``max_tokens`` cut is an estimate (4 characters per token).
- Usage comes from ``contextUsage`` before and after the answer and ``measureContextUsage()`` of the
  prompt when the browser has them (``usage.extra["estimated"]`` is False); otherwise it is estimated.
- JSON output: ``response_format`` becomes ``responseConstraint`` (a JSON Schema).
- Tools are emulated by the client (JSON answers), like for web-llm models without native tools.
- Once ``availability()`` says "unavailable", ``backend.unavailable`` says why and a Router skips the
  backend; ``router.check_health()`` asks the browser again.

``temperature`` is passed only together with ``top_k`` given to the backend: the explainer keeps
``temperature``/``topK`` for extension contexts (web pages ignore them) and older Chrome refused one
without the other. Fields the API cannot honour at all (``n`` > 1, ``logprobs``, ``logit_bias``, images)
are refused with InvalidRequest before anything runs; sampling hints it has no use for (``seed``,
``top_p``, penalties) are ignored.
"""

from __future__ import annotations

import asyncio
import collections
import json
import math
import time
import uuid
from collections.abc import Callable
from typing import Any

from app.backends.base import Capabilities
from app.errors import Aborted, BuiltInModelUnavailable, ContextWindowExceeded, InvalidRequest, UsageError
from app.ffi import prompt_api
from app.ffi.prompt_api import PromptApiBridge
from app.ir import ChatCompletion, ChatCompletionChunk, ChatCompletionMessage, Choice, ChoiceDelta, ChunkChoice, Usage
from app.params import ChatRequest

STATES = ("unavailable", "downloadable", "downloading", "available")
MODEL = "chrome-built-in"  # the API names no model; this is what answers say in ``model``
CHARS_PER_TOKEN = 4
_REFUSED = ("logprobs", "top_logprobs", "logit_bias")


def estimate_tokens(text: str) -> int:
    """A rough token count (the Prompt API has no tokenizer): 4 characters per token."""
    return math.ceil(len(text) / CHARS_PER_TOKEN)


class OutputLimiter:
    """Applies stop sequences and a token budget to text that arrives in pieces.

        limit = OutputLimiter(stop=["\\n\\n"], max_tokens=100)
        shown = limit.feed(piece)      # the part that may be shown now
        shown += limit.finish()        # at the end: what was held back
        limit.finish_reason            # "stop" (a stop sequence), "length" (the budget) or None

    Text that could be the start of a stop sequence is held back until the next piece decides; the
    stop sequence itself is never shown. Once ``finish_reason`` is set, further pieces show nothing.
    """

    def __init__(self, stop: list[str] | None = None, max_tokens: int | None = None) -> None:
        self.stop = [s for s in (stop or ()) if s]
        self.max_chars = None if max_tokens is None else max_tokens * CHARS_PER_TOKEN
        self.finish_reason: str | None = None
        self.shown = 0  # characters shown so far
        self._held = ""

    def feed(self, piece: str) -> str:
        if self.finish_reason is not None:
            return ""
        text = self._held + piece
        self._held = ""
        cut = min((i for i in (text.find(s) for s in self.stop) if i >= 0), default=-1)
        if cut >= 0:
            text, self.finish_reason = text[:cut], "stop"
        else:
            keep = self._partial_stop(text)
            if keep:
                text, self._held = text[:-keep], text[-keep:]
        return self._budget(text)

    def finish(self) -> str:
        """The held-back text, once the model has ended its answer."""
        text, self._held = self._held, ""
        return "" if self.finish_reason is not None else self._budget(text)

    def _partial_stop(self, text: str) -> int:
        """Length of the longest end of ``text`` that begins some stop sequence."""
        longest = 0
        for s in self.stop:
            for n in range(min(len(s) - 1, len(text)), longest, -1):
                if text.endswith(s[:n]):
                    longest = n
                    break
        return longest

    def _budget(self, text: str) -> str:
        if self.max_chars is not None and self.shown + len(text) > self.max_chars:
            text = text[:self.max_chars - self.shown]
            self.finish_reason = "length"
            self._held = ""
        self.shown += len(text)
        return text


def to_prompt(request: ChatRequest) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """``(initialPrompts, prompt)``: the system message starts the session; the rest is the prompt.

    Only text turns from user and assistant exist in this API: tool turns are emulated by the client
    before they get here, images are refused (InvalidRequest).
    """
    initial: list[dict[str, str]] = []
    prompt: list[dict[str, str]] = []
    for i, m in enumerate(request.messages):
        content = m.get("content")
        if m["role"] == "tool" or m.get("tool_calls"):
            raise InvalidRequest(f"messages[{i}]: Chrome's built-in model has no tool turns; use the Client, "
                                 "which emulates tools", param="messages")
        if not isinstance(content, str):
            raise InvalidRequest(f"messages[{i}].content: Chrome's built-in model takes text only here",
                                 param="messages")
        if m["role"] == "system":
            initial.append({"role": "system", "content": content})
        else:
            prompt.append({"role": m["role"], "content": content})
    return initial, prompt


def response_constraint(request: ChatRequest) -> dict[str, Any] | None:
    """The JSON Schema for ``responseConstraint``, from the request's ``response_format``."""
    fmt = request.response_format
    if not fmt:
        return None
    return json.loads(fmt["schema"]) if "schema" in fmt else {"type": "object"}


def usage_of(*, before: float | None, prompt_tokens: float | None, after: float | None,
             prompt_text: str, output: str) -> Usage:
    """Token counts from ``contextUsage`` before/after the answer and the measured prompt; estimated
    (``extra["estimated"]``) where the browser did not say, or the answer was cut off (an aborted
    prompt is taken out of the session, so its tokens no longer show in ``contextUsage``)."""
    measured = before is not None and prompt_tokens is not None
    prompt = int(before + prompt_tokens) if measured else estimate_tokens(prompt_text)  # type: ignore[operator]
    completion = None
    if measured and after is not None and after > before + prompt_tokens:  # type: ignore[operator]
        completion = int(after - before - prompt_tokens)  # type: ignore[operator]
    estimated = completion is None or not measured
    if completion is None:
        completion = estimate_tokens(output)
    return Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion,
                 extra={"estimated": estimated})


class ChromeAIBackend:
    """Chat with the browser's built-in model. See the module docstring."""

    name = "chrome-ai"

    def __init__(self, *, languages: tuple[str, ...] = ("en",), top_k: int | None = None,
                 on_progress: Callable[[dict[str, Any]], None] | None = None, api: PromptApiBridge = prompt_api) -> None:
        if not languages or not all(isinstance(code, str) and code for code in languages):
            raise UsageError("languages must be BCP 47 codes, e.g. ('en',)")
        if top_k is not None and (not isinstance(top_k, int) or top_k < 1):
            raise UsageError(f"top_k must be an integer >= 1, got {top_k!r}")
        self.languages = tuple(languages)
        self.top_k = top_k
        self._api = api
        self._listeners: list[Callable[[dict[str, Any]], None]] = [on_progress] if on_progress else []
        self.state: str | None = None  # the last availability() answer
        self.unavailable: str | None = None  # why it cannot serve anything (the router skips it)
        self.loaded: str | None = None  # MODEL once the model is on this device, ready to answer
        self.context_window: int | None = None  # tokens, once a session has said

    def __repr__(self) -> str:
        return f"ChromeAIBackend(state={self.state!r}, languages={self.languages!r})"

    def _expected(self) -> dict[str, Any]:
        text = [{"type": "text", "languages": list(self.languages)}]
        return {"expectedInputs": text, "expectedOutputs": text}

    async def availability(self) -> str:
        """Ask the browser (``LanguageModel.availability()``); "unavailable" when it has no Prompt API."""
        if not self._api.prompt_api_present():
            state, why = "unavailable", "this browser has no built-in model (no LanguageModel API)"
        else:
            state = await self._api.prompt_api_availability(self._expected())
            why = f"the built-in model is unavailable here for languages {', '.join(self.languages)}"
        if state not in STATES:
            state = "unavailable"
        self.state = state
        self.unavailable = why if state == "unavailable" else None
        self.loaded = MODEL if state == "available" else None
        return state

    async def health(self) -> None:
        """Cheap check for the router: availability only, nothing created or downloaded."""
        if await self.availability() == "unavailable":
            raise BuiltInModelUnavailable(self.unavailable or "unavailable", availability="unavailable")

    async def _require(self) -> None:
        if self.state != "available":
            await self.health()

    async def load(self, *, on_progress: Callable[[dict[str, Any]], None] | None = None) -> None:
        """Make the model ready (downloading it if needed; Chrome wants a user gesture for that)."""
        if on_progress is not None:
            self._listeners.append(on_progress)
        try:
            session = await self._create([])
            session.destroy()
        finally:
            if on_progress is not None:
                self._listeners.remove(on_progress)

    def _progress(self, loaded: float) -> None:
        report = {"progress": loaded, "text": f"Chrome's built-in model: {loaded:.0%}"}
        for listener in list(self._listeners):
            listener(report)

    async def _create(self, initial: list[dict[str, str]], temperature: float | None = None) -> Any:
        await self._require()
        options: dict[str, Any] = {**self._expected()}
        if initial:
            options["initialPrompts"] = initial
        if temperature is not None and self.top_k is not None:
            options.update(temperature=temperature, topK=self.top_k)
        session = await self._api.prompt_api_create(options, self._progress)
        self.state, self.loaded = "available", MODEL
        window = session.usage().get("window")
        self.context_window = int(window) if window else self.context_window
        return session

    def capabilities(self, model: str | None) -> Capabilities:
        return Capabilities(tools="emulated", json_schema=True, max_context=self.context_window, seed=False,
                            local=True)

    # ------------------------------------------------------------------ requests

    def _check(self, request: ChatRequest) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
        for name in _REFUSED:
            if request.params.get(name):
                raise InvalidRequest(f"{name}: Chrome's built-in model does not give token details", param=name)
        if request.params.get("n", 1) != 1:
            raise InvalidRequest("n: Chrome's built-in model gives one answer per request", param="n")
        if request.tools is not None:
            raise InvalidRequest("tools: Chrome's built-in model has no tool calling; use the Client, which "
                                 "emulates tools", param="tools")
        return to_prompt(request)

    async def _open(self, request: ChatRequest, prompt: list[dict[str, str]],
                    initial: list[dict[str, str]]) -> tuple[Any, dict[str, Any], float | None, float | None]:
        """A session for one request, its prompt options and the context it uses before the answer.
        A prompt that cannot fit fails here, before the model runs."""
        session = await self._create(initial, request.params.get("temperature"))
        try:
            options: dict[str, Any] = {}
            schema = response_constraint(request)
            if schema is not None:
                options["responseConstraint"] = schema
            before = session.usage().get("used")
            needed = await session.measure(prompt, options)
            window = session.usage().get("window")
            if needed is not None and before is not None and window is not None and before + needed > window:
                raise ContextWindowExceeded(
                    f"the prompt needs {needed:.0f} tokens and {window - before:.0f} of the built-in model's "
                    f"{window:.0f} are left")
        except BaseException:
            session.destroy()
            raise
        return session, options, before, needed

    async def complete(self, request: ChatRequest) -> ChatCompletion:
        initial, prompt = self._check(request)
        session, options, before, needed = await self._open(request, prompt, initial)
        try:
            text = await session.prompt(prompt, options)
            after = session.usage().get("used")
        finally:
            session.destroy()  # also what stops the model when this task is cancelled (a timeout)
        limit = OutputLimiter(request.params.get("stop"), request.params.get("max_tokens"))
        shown = limit.feed(text) + limit.finish()
        usage = usage_of(before=before, prompt_tokens=needed, after=after, output=shown,
                         prompt_text=_text_of(initial + prompt))
        message = ChatCompletionMessage(content=shown)
        return ChatCompletion(id=_new_id(), created=int(time.time()), model=MODEL,
                              choices=(Choice(0, message, limit.finish_reason or "stop"),), usage=usage,
                              backend=self.name)

    def stream(self, request: ChatRequest) -> ChromeAIStream:
        initial, prompt = self._check(request)
        return ChromeAIStream(self, request, initial, prompt)


def _new_id() -> str:
    return f"chromeai-{uuid.uuid4().hex[:24]}"


def _text_of(messages: list[dict[str, str]]) -> str:
    return "\n".join(m["content"] for m in messages)


class ChromeAIStream:
    """One streamed answer: ``promptStreaming``'s deltas as chunks, then a final chunk with the
    finish reason (and a usage chunk when asked for). ``stop()`` aborts the prompt; the stream then
    ends with finish_reason "abort". ``aclose()`` also destroys the session."""

    def __init__(self, backend: ChromeAIBackend, request: ChatRequest, initial: list[dict[str, str]],
                 prompt: list[dict[str, str]]) -> None:
        self._backend = backend
        self._request = request
        self._initial = initial
        self._prompt = prompt
        self._limit = OutputLimiter(request.params.get("stop"), request.params.get("max_tokens"))
        self._session: Any = None
        self._reader: Any = None
        self._before: float | None = None
        self._needed: float | None = None
        self._output: list[str] = []
        self._pending: collections.deque[ChatCompletionChunk] = collections.deque()
        self._id = _new_id()
        self._created = int(time.time())
        self._started = False
        self._stopped = False
        self._ended = False

    async def start(self) -> None:
        """Check availability, create the session and measure the prompt; the model runs on the first read."""
        if self._started:
            return
        self._started = True
        self._session, options, self._before, self._needed = await self._backend._open(
            self._request, self._prompt, self._initial)
        self._reader = self._backend._api.PromptStream(self._session, self._prompt, options)

    def __aiter__(self) -> ChromeAIStream:
        return self

    async def __anext__(self) -> ChatCompletionChunk:
        while not self._pending:
            if self._ended:
                raise StopAsyncIteration
            if self._stopped and self._reader is None:  # stopped before anything ran: create nothing
                self._end("abort")
                continue
            await self.start()
            await self._read()
        return self._pending.popleft()

    async def _read(self) -> None:
        if self._stopped:
            self._end("abort")
            return
        try:
            piece = await self._reader.__anext__()
        except StopAsyncIteration:
            self._emit(self._limit.finish())
            self._end(self._limit.finish_reason or "stop")
            return
        except Aborted:
            if not self._stopped:
                self._close_session()
                raise
            self._end("abort")
            return
        except asyncio.CancelledError:
            self._close_session()  # the caller gave up: stop the model too
            raise
        except BaseException:
            self._close_session()
            raise
        self._emit(self._limit.feed(str(piece)))
        if self._limit.finish_reason is not None:  # a stop sequence or the budget: the model need not go on
            self._reader.cancel()
            self._end(self._limit.finish_reason)

    def _emit(self, text: str) -> None:
        if text:
            self._output.append(text)
            first = len(self._output) == 1
            self._pending.append(self._chunk(ChoiceDelta(content=text, role="assistant" if first else None)))

    def _chunk(self, delta: ChoiceDelta, finish: str | None = None) -> ChatCompletionChunk:
        return ChatCompletionChunk(id=self._id, created=self._created, model=MODEL,
                                   choices=(ChunkChoice(index=0, delta=delta, finish_reason=finish),))

    def _end(self, reason: str) -> None:
        self._ended = True
        self._pending.append(self._chunk(ChoiceDelta(), reason))
        if self._request.include_usage and reason != "abort":
            after = self._session.usage().get("used") if self._session is not None else None
            usage = usage_of(before=self._before, prompt_tokens=self._needed, after=after,
                             output="".join(self._output), prompt_text=_text_of(self._initial + self._prompt))
            self._pending.append(ChatCompletionChunk(id=self._id, created=self._created, model=MODEL, choices=(),
                                                     usage=usage))
        self._close_session()

    def _close_session(self) -> None:
        self._ended = True
        if self._session is not None:
            self._session.destroy()

    async def stop(self) -> None:
        """Abort the prompt; keep iterating to receive the final chunk (finish_reason "abort")."""
        if self._ended or self._stopped:
            return
        self._stopped = True
        if self._reader is not None:
            self._reader.cancel()

    async def aclose(self) -> None:
        """Stop now and free the session; safe at any time, more than once."""
        await self.stop()
        self._pending.clear()
        self._close_session()
        if self._reader is not None:
            try:
                await self._reader.aclose()
            except Aborted:
                pass
