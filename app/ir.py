"""What comes back from a chat request: plain frozen dataclasses shaped like openai-python's types.

    completion.choices[0].message.content
    chunk.choices[0].delta.content
    completion.usage.total_tokens

Every backend produces these, so the UI and the router never see a backend's own shapes.
``from_dict`` reads the OpenAI wire shape (which web-llm also uses); unknown keys are ignored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class NotGiven:
    """The type of :data:`NOT_GIVEN`: "the caller did not pass this", distinct from ``None``."""

    _instance: NotGiven | None = None

    def __new__(cls) -> NotGiven:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return "NOT_GIVEN"


NOT_GIVEN = NotGiven()


@dataclass(frozen=True, slots=True)
class FunctionCall:
    name: str
    arguments: str  # JSON text, as OpenAI sends it


@dataclass(frozen=True, slots=True)
class ToolCall:
    id: str
    function: FunctionCall
    type: str = "function"

    @classmethod
    def from_dict(cls, d: dict[str, Any], index: int = 0) -> ToolCall:
        fn = d.get("function") or {}
        return cls(id=d.get("id") or f"call_{index}",
                   function=FunctionCall(name=fn.get("name", ""), arguments=fn.get("arguments") or "{}"))

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "type": self.type,
                "function": {"name": self.function.name, "arguments": self.function.arguments}}


@dataclass(frozen=True, slots=True)
class ChatCompletionMessage:
    content: str | None
    role: str = "assistant"
    tool_calls: tuple[ToolCall, ...] | None = None
    parsed: Any = None  # set by client.chat.completions.parse()
    reasoning_content: str | None = None  # a thinking model's reasoning (app/reasoning.py)

    def to_dict(self) -> dict[str, Any]:
        """The message as an OpenAI request message, to append to ``messages`` for the next turn
        (without ``reasoning_content``: a model's thinking is not sent back)."""
        out: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.tool_calls:
            out["tool_calls"] = [t.to_dict() for t in self.tool_calls]
        return out


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    extra: dict[str, Any] = field(default_factory=dict)  # web-llm: decode_tokens_per_s, ...

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> Usage | None:
        if not d:
            return None
        p, c = int(d.get("prompt_tokens") or 0), int(d.get("completion_tokens") or 0)
        return cls(prompt_tokens=p, completion_tokens=c, total_tokens=int(d.get("total_tokens") or p + c),
                   extra=dict(d.get("extra") or {}))


@dataclass(frozen=True, slots=True)
class Choice:
    index: int
    message: ChatCompletionMessage
    finish_reason: str | None
    logprobs: Any = None


@dataclass(frozen=True, slots=True)
class ChatCompletion:
    id: str
    created: int
    model: str
    choices: tuple[Choice, ...]
    usage: Usage | None = None
    object: str = "chat.completion"
    warnings: tuple[str, ...] = ()  # what the client normalised (e.g. merged system messages)
    backend: str = ""  # which backend served it
    route: str = ""  # why the router chose that backend (empty without a router)

    @classmethod
    def from_dict(cls, d: dict[str, Any], *, warnings: tuple[str, ...] = (), backend: str = "") -> ChatCompletion:
        choices = []
        for i, c in enumerate(d.get("choices") or ()):
            m = c.get("message") or {}
            calls = m.get("tool_calls")
            choices.append(Choice(
                index=c.get("index", i),
                message=ChatCompletionMessage(
                    content=m.get("content"), role=m.get("role") or "assistant",
                    tool_calls=tuple(ToolCall.from_dict(t, j) for j, t in enumerate(calls)) if calls else None,
                    reasoning_content=m.get("reasoning_content") or m.get("reasoning")),
                finish_reason=c.get("finish_reason"),
                logprobs=c.get("logprobs"),
            ))
        return cls(id=d.get("id", ""), created=int(d.get("created") or 0), model=d.get("model", ""),
                   choices=tuple(choices), usage=Usage.from_dict(d.get("usage")),
                   warnings=warnings, backend=backend)


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    index: int
    id: str | None = None
    name: str | None = None
    arguments: str | None = None


@dataclass(frozen=True, slots=True)
class ChoiceDelta:
    content: str | None = None
    role: str | None = None
    tool_calls: tuple[ToolCallDelta, ...] | None = None
    reasoning_content: str | None = None


@dataclass(frozen=True, slots=True)
class ChunkChoice:
    index: int
    delta: ChoiceDelta
    finish_reason: str | None = None
    logprobs: Any = None


@dataclass(frozen=True, slots=True)
class ChatCompletionChunk:
    id: str
    created: int
    model: str
    choices: tuple[ChunkChoice, ...]
    usage: Usage | None = None
    object: str = "chat.completion.chunk"

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ChatCompletionChunk:
        # Hot path: one call per streamed token. Keep it to plain dict reads.
        choices = []
        for c in d.get("choices") or ():
            delta = c.get("delta") or {}
            calls = delta.get("tool_calls")
            tool_deltas = None
            if calls:
                tool_deltas = tuple(
                    ToolCallDelta(index=t.get("index", j), id=t.get("id"),
                                  name=(t.get("function") or {}).get("name"),
                                  arguments=(t.get("function") or {}).get("arguments"))
                    for j, t in enumerate(calls))
            choices.append(ChunkChoice(
                index=c.get("index", 0),
                delta=ChoiceDelta(content=delta.get("content"), role=delta.get("role"),
                                  tool_calls=tool_deltas,
                                  reasoning_content=delta.get("reasoning_content") or delta.get("reasoning")),
                finish_reason=c.get("finish_reason"), logprobs=c.get("logprobs")))
        usage = d.get("usage")
        return cls(id=d.get("id", ""), created=int(d.get("created") or 0), model=d.get("model", ""),
                   choices=tuple(choices), usage=Usage.from_dict(usage) if usage else None)


def content_chunk(like: ChatCompletionChunk, content: str) -> ChatCompletionChunk:
    """``like`` (a chunk of one choice, no finish_reason, logprobs or usage) with ``content`` as its
    text: what ``from_dict`` makes of a chunk that differs from ``like``'s only in its text.

    Hot path: most chunks of a streamed answer are built here, without reading a dict.
    """
    choice = like.choices[0]
    delta = choice.delta
    return ChatCompletionChunk(like.id, like.created, like.model, (ChunkChoice(
        choice.index, ChoiceDelta(content, delta.role, delta.tool_calls, delta.reasoning_content)),))


class ChatCompletionAccumulator:
    """Folds a stream of chunks into the message shown so far and, at the end, a ChatCompletion.

    Pure: no I/O, one instance per stream, the same for every backend.
    """

    def __init__(self) -> None:
        self._content: dict[int, list[str]] = {}
        self._reasoning: dict[int, list[str]] = {}
        self._finish: dict[int, str | None] = {}
        self._tools: dict[int, dict[int, dict[str, str]]] = {}
        self.id = ""
        self.created = 0
        self.model = ""
        self.usage: Usage | None = None

    def add(self, chunk: ChatCompletionChunk) -> None:
        self.id = self.id or chunk.id
        self.created = self.created or chunk.created
        self.model = self.model or chunk.model
        if chunk.usage is not None:
            self.usage = chunk.usage
        for c in chunk.choices:
            if c.delta.content:
                self._content.setdefault(c.index, []).append(c.delta.content)
            else:
                self._content.setdefault(c.index, [])
            if c.delta.reasoning_content:
                self._reasoning.setdefault(c.index, []).append(c.delta.reasoning_content)
            if c.delta.tool_calls:
                slots = self._tools.setdefault(c.index, {})
                for t in c.delta.tool_calls:
                    slot = slots.setdefault(t.index, {"id": "", "name": "", "arguments": ""})
                    slot["id"] = slot["id"] or (t.id or "")
                    slot["name"] += t.name or ""
                    slot["arguments"] += t.arguments or ""
            if c.finish_reason is not None:
                self._finish[c.index] = c.finish_reason

    def content(self, index: int = 0) -> str:
        return "".join(self._content.get(index, ()))

    def reasoning(self, index: int = 0) -> str:
        return "".join(self._reasoning.get(index, ()))

    def finish_reason(self, index: int = 0) -> str | None:
        return self._finish.get(index)

    def completion(self, *, warnings: tuple[str, ...] = (), backend: str = "", route: str = "") -> ChatCompletion:
        choices = []
        for index in sorted(self._content.keys() | self._tools.keys() | self._finish.keys()):
            calls = None
            if self._tools.get(index):
                calls = tuple(ToolCall(id=s["id"] or f"call_{i}", function=FunctionCall(s["name"], s["arguments"] or "{}"))
                              for i, s in sorted(self._tools[index].items()))
            text = self.content(index)
            choices.append(Choice(index=index, message=ChatCompletionMessage(
                content=text if (text or not calls) else None, tool_calls=calls,
                reasoning_content=self.reasoning(index) or None),
                finish_reason=self._finish.get(index)))
        return ChatCompletion(id=self.id, created=self.created, model=self.model, choices=tuple(choices),
                              usage=self.usage, warnings=warnings, backend=backend, route=route)
