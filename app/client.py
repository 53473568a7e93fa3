"""The public Python API, shaped like openai-python (everything is async here).

    from app.client import Client
    from app.backends.webllm import WebLLMBackend

    backend = WebLLMBackend()
    await backend.load("Qwen2.5-0.5B-Instruct-q4f32_1-MLC")
    client = Client(backend)

    reply = await client.chat.completions.create(messages=[{"role": "user", "content": "Hi"}])
    print(reply.choices[0].message.content, reply.usage.total_tokens)

    async with await client.chat.completions.create(messages=msgs, stream=True) as stream:
        async for chunk in stream:
            print(chunk.choices[0].delta.content or "", end="")

    event = await client.chat.completions.parse(messages=msgs, response_format=CalendarEvent)
    event.choices[0].message.parsed  # a CalendarEvent

Every request is validated before a backend is touched (:class:`~app.errors.InvalidRequest`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any

from app.backends.base import Backend, ChunkStream
from app.errors import VisionUnavailable
from app.ir import (
    NOT_GIVEN,
    ChatCompletion,
    ChatCompletionAccumulator,
    ChatCompletionChunk,
    ChoiceDelta,
    ChunkChoice,
    ToolCallDelta,
)
from app.params import ChatRequest
from app.reasoning import ThinkSplitter, split_think


class Stream:
    """The chunks of one streamed answer. Owns its request: leaving ``async with``, ``aclose()`` or
    ``stop()`` ends generation in the engine, and the stream's last chunk says ``"abort"``.

    After (or during) iteration, ``stream.content`` is the text so far and ``stream.completion()``
    the whole answer as a :class:`~app.ir.ChatCompletion`. A local engine serves one request at a
    time and a stream holds it until it ends: use ``async with`` when you may leave the loop early.
    """

    def __init__(self, source: ChunkStream, *, warnings: tuple[str, ...] = (), backend: str = "") -> None:
        self._source = source
        self.warnings = warnings
        self.backend = backend
        self.accumulator = ChatCompletionAccumulator()
        self._think: dict[int, ThinkSplitter] = {}  # per choice: <think>...</think> -> reasoning_content

    def __aiter__(self) -> AsyncIterator[ChatCompletionChunk]:
        return self

    async def __anext__(self) -> ChatCompletionChunk:
        chunk = self._split(await self._source.__anext__())
        self.accumulator.add(chunk)
        return chunk

    def _split(self, chunk: ChatCompletionChunk) -> ChatCompletionChunk:
        """A thinking block in ``content`` moved to ``reasoning_content`` (app/reasoning.py)."""
        changed = None
        for i, c in enumerate(chunk.choices):
            splitter = self._think.get(c.index)
            if splitter is None:
                splitter = self._think[c.index] = ThinkSplitter()
            elif splitter.passthrough:
                continue
            reasoning, content = splitter.feed(c.delta.content or "")
            if c.finish_reason is not None:
                more_reasoning, more_content = splitter.end()
                reasoning, content = reasoning + more_reasoning, content + more_content
            if content == (c.delta.content or "") and not reasoning:
                continue
            delta = replace(c.delta, content=content or None,
                            reasoning_content=((c.delta.reasoning_content or "") + reasoning) or None)
            changed = changed or list(chunk.choices)
            changed[i] = replace(c, delta=delta)
        return chunk if changed is None else replace(chunk, choices=tuple(changed))

    @property
    def reasoning(self) -> str:
        """The thinking so far (empty for a model that does not think)."""
        return self.accumulator.reasoning()

    async def stop(self) -> None:
        """Ask the engine to stop; keep iterating to get the final chunk (finish_reason "abort")."""
        await self._source.stop()

    async def aclose(self) -> None:
        """Stop generating and release the engine now."""
        await self._source.aclose()

    async def __aenter__(self) -> Stream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    @property
    def content(self) -> str:
        return self.accumulator.content()

    @property
    def finish_reason(self) -> str | None:
        return self.accumulator.finish_reason()

    def completion(self) -> ChatCompletion:
        return self.accumulator.completion(warnings=self.warnings, backend=self.backend, route=self.route)

    @property
    def route(self) -> str:
        return getattr(self._source, "route", "")


class _OneShotStream:
    """A finished completion replayed as a stream (used for emulated tool calls, whose JSON answer
    is only meaningful once whole)."""

    def __init__(self, produce: Callable[[], Any], *, include_usage: bool = False) -> None:
        self._produce = produce
        self._include_usage = include_usage
        self._chunks: list[ChatCompletionChunk] | None = None
        self._closed = False

    async def start(self) -> None:
        if self._chunks is None:
            completion: ChatCompletion = await self._produce()
            self._chunks = list(_as_chunks(completion, include_usage=self._include_usage))

    def __aiter__(self) -> _OneShotStream:
        return self

    async def __anext__(self) -> ChatCompletionChunk:
        await self.start()
        if self._closed or not self._chunks:
            raise StopAsyncIteration
        return self._chunks.pop(0)

    async def stop(self) -> None:
        self._closed = True

    async def aclose(self) -> None:
        self._closed = True


def _split_completion(completion: ChatCompletion) -> ChatCompletion:
    """A whole answer's thinking block moved to ``message.reasoning_content``."""
    choices = []
    for choice in completion.choices:
        text = choice.message.content
        if text and choice.message.reasoning_content is None and text.lstrip().startswith("<think>"):
            reasoning, answer = split_think(text)
            choice = replace(choice, message=replace(choice.message, content=answer, reasoning_content=reasoning))
        choices.append(choice)
    return replace(completion, choices=tuple(choices))


def _as_chunks(completion: ChatCompletion, *, include_usage: bool) -> list[ChatCompletionChunk]:
    chunks = []
    for choice in completion.choices:
        msg = choice.message
        calls = None
        if msg.tool_calls:
            calls = tuple(ToolCallDelta(index=i, id=t.id, name=t.function.name, arguments=t.function.arguments)
                          for i, t in enumerate(msg.tool_calls))
        delta = ChoiceDelta(content=msg.content, role="assistant", tool_calls=calls)
        chunks.append(ChatCompletionChunk(id=completion.id, created=completion.created, model=completion.model,
                                          choices=(ChunkChoice(index=choice.index, delta=delta,
                                                               finish_reason=choice.finish_reason),)))
    if include_usage and completion.usage is not None:  # a usage chunk (no choices) only when asked for
        chunks.append(ChatCompletionChunk(id=completion.id, created=completion.created, model=completion.model,
                                          choices=(), usage=completion.usage))
    return chunks


def _needs_emulation(request: ChatRequest, tool_support: str) -> bool:
    """Tools, or a history with tool turns, sent to a model whose engine cannot handle them itself."""
    if tool_support == "native":
        return False
    if request.tools is not None:
        return True
    return any(m["role"] == "tool" or m.get("tool_calls") for m in request.messages)


class Completions:
    def __init__(self, client: Client) -> None:
        self._client = client

    async def create(self, *, messages: list[dict[str, Any]], model: str | None = NOT_GIVEN,  # type: ignore[assignment]
                     stream: bool = False, **params: Any) -> ChatCompletion | Stream:
        """Create a chat completion; with ``stream=True`` a :class:`Stream` of chunks.

        Takes OpenAI's fields: temperature, top_p, max_tokens, seed, stop, frequency_penalty,
        presence_penalty, repetition_penalty, logit_bias, logprobs, top_logprobs, n, ignore_eos,
        response_format, enable_thinking, tools, tool_choice, stream_options.
        """
        request = ChatRequest.build(model=model, messages=messages, stream=stream, **params)
        return await self._send(request)

    async def _send(self, request: ChatRequest) -> ChatCompletion | Stream:
        backend = self._client.backend
        caps = backend.capabilities(request.model)
        if request.images and not caps.vision and getattr(backend, "routes", None) is None:
            # A router says this per route (VisionUnavailable too); a single backend is checked here.
            why = f"{backend.name}: cannot see images ({request.model or 'its model'} is text-only)"
            raise VisionUnavailable(f"{why}. Choose a vision model (e.g. Phi-3.5-vision) or an endpoint that "
                                    "declares vision, or send the message without images", attempts=(why,))
        if _needs_emulation(request, caps.tools):
            return await self._send_emulated(request)
        if request.stream:
            source = backend.stream(request)
            await source.start()
            # A router's stream says which backend it settled on.
            served_by = getattr(source, "served_by", "") or backend.name
            return Stream(source, warnings=request.warnings, backend=served_by)
        completion = _split_completion(await backend.complete(request))
        return replace(completion, warnings=request.warnings, backend=completion.backend or backend.name)

    async def _send_emulated(self, request: ChatRequest) -> ChatCompletion | Stream:
        """Tools for a model without native tool calling: described in the prompt, answered as JSON."""
        from app import tools

        backend = self._client.backend
        sent = tools.emulate(replace(request, stream=False, include_usage=False))

        async def produce() -> ChatCompletion:
            answer = await backend.complete(sent)
            return replace(tools.parse_emulated(answer, request), warnings=request.warnings,
                           backend=backend.name)

        if not request.stream:
            return await produce()
        # The JSON answer only means something once whole: stream it as one finished chunk.
        stream = Stream(_OneShotStream(produce, include_usage=request.include_usage), warnings=request.warnings,
                        backend=backend.name)
        await stream._source.start()
        return stream

    async def parse(self, *, response_format: Any, messages: list[dict[str, Any]], **params: Any) -> ChatCompletion:
        """Like ``create``, constrained to JSON of ``response_format`` (a pydantic model class or a
        JSON Schema dict); ``choices[i].message.parsed`` holds the validated object."""
        from app import structured

        schema, parse = structured.schema_for(response_format)
        if params.get("stream"):
            from app.errors import InvalidRequest

            raise InvalidRequest("parse() does not stream; use create(stream=True)", param="stream")
        completion = await self.create(messages=messages, response_format=structured.response_format_for(schema),
                                       **params)
        assert isinstance(completion, ChatCompletion)
        choices = tuple(replace(c, message=replace(c.message, parsed=parse(c.message.content or "")))
                        for c in completion.choices)
        return replace(completion, choices=choices)

    async def run_tools(self, *, messages: list[dict[str, Any]], tools: list[Any], max_steps: int = 5,
                        **params: Any) -> Any:
        """Call the model, run the Python functions it asks for, feed results back; up to ``max_steps``
        model calls. Returns :class:`app.tools.RunToolsResult`."""
        from app import tools as tools_mod

        return await tools_mod.run_tools(self.create, messages=messages, tools=tools, max_steps=max_steps,
                                         **params)


class Chat:
    def __init__(self, client: Client) -> None:
        self.completions = Completions(client)


class Client:
    """Chat with a backend (web-llm in this page, or an OpenAI-compatible endpoint)."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.chat = Chat(self)
