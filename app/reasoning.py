"""A reasoning model's thinking, apart from its answer.

Qwen3 and other thinking models write ``<think>…</think>`` before the answer; web-llm streams that
as ``content``. OpenAI-compatible servers that parse it themselves send ``reasoning_content`` (vLLM,
llama.cpp, DeepSeek) or ``reasoning``; those pass through unchanged. The client (app/client.py) runs
every answer through :class:`ThinkSplitter`, so ``delta.reasoning_content`` carries the thinking
and ``delta.content`` only the answer, whichever backend answered, as OpenAI-compatible servers
return it. The thinking is never part of ``message.to_dict()`` (the next turn's history).

    splitter = ThinkSplitter()
    splitter.feed("<think>\\nhm")   # -> ("hm", "")       (reasoning, content) of this piece
    splitter.feed("m</think>\\n\\nHi")  # -> ("m", "Hi")
    split_think("<think>x</think>Hi")   # -> ("x", "Hi") for a whole text

Only a ``<think>`` at the very start of the answer (after whitespace) opens a thinking block; one
later in the text is the answer's own words. An answer cut off while thinking (max_tokens, Stop)
is all reasoning. Plain Python: unit-tested under CPython.
"""

from __future__ import annotations

OPEN = "<think>"
CLOSE = "</think>"


def toggles_thinking(model_id: str | None) -> bool:
    """Whether ``enable_thinking`` switches this model's thinking on and off. web-llm's Qwen3 builds
    do (its chat template takes the flag; with false, web-llm prefills an empty think block); sent
    to any other model, web-llm would prefill that block all the same, so it is sent to these only."""
    return bool(model_id) and model_id.lower().startswith("qwen3-")  # type: ignore[union-attr]


def split_think(text: str) -> tuple[str, str]:
    """(reasoning, answer) of a whole text."""
    splitter = ThinkSplitter()
    reasoning, content = splitter.feed(text)
    tail_reasoning, tail_content = splitter.end()
    return (reasoning + tail_reasoning).strip(), content + tail_content


class ThinkSplitter:
    """Splits one streamed answer into reasoning and content, piece by piece. Holds back at most a
    few characters that may be the start of a tag split across pieces (until :meth:`end`)."""

    __slots__ = ("_begun", "_held", "_state")

    def __init__(self) -> None:
        self._state = "start"  # start -> thinking -> after -> answer, or start -> answer
        self._held = ""
        self._begun = False  # the reasoning's first visible character was given

    @property
    def passthrough(self) -> bool:
        """True once the rest is all answer (no more work per piece)."""
        return self._state == "answer"

    def feed(self, piece: str) -> tuple[str, str]:
        if self._state == "answer":
            return "", piece
        text = self._held + piece
        self._held = ""
        if self._state == "start":
            stripped = text.lstrip()
            if stripped.startswith(OPEN):
                self._state = "thinking"
                text = stripped[len(OPEN):]
            elif OPEN.startswith(stripped):  # whitespace or a part of "<think>": wait for more
                self._held = text
                return "", ""
            else:
                self._state = "answer"
                return "", text
        if self._state == "thinking":
            end = text.find(CLOSE)
            if end < 0:
                # Held back: what may begin "</think>", and trailing whitespace (it may be the last
                # before the tag, which is not part of the reasoning).
                body = text[: len(text) - _partial_suffix(text, CLOSE)]
                body = body.rstrip()
                self._held = text[len(body):]
                return self._reasoning(body), ""
            reasoning, text = text[:end], text[end + len(CLOSE):]
            self._state = "after"
            content = self._after(text)
            return self._reasoning(reasoning.rstrip()), content
        return "", self._after(text)

    def _reasoning(self, text: str) -> str:
        """The reasoning without the whitespace it starts with."""
        if not self._begun:
            text = text.lstrip()
            self._begun = bool(text)
        return text

    def _after(self, text: str) -> str:
        """Just after ``</think>``: the blank lines before the answer are not the answer."""
        stripped = text.lstrip()
        if stripped:
            self._state = "answer"
            return stripped
        return ""

    def end(self) -> tuple[str, str]:
        """What is still held back, once the stream is over."""
        held, self._held = self._held, ""
        if self._state == "thinking":
            return self._reasoning(held.rstrip()), ""
        if self._state == "start":
            return "", held
        return "", ""


def _partial_suffix(text: str, tag: str) -> int:
    """How many characters at the end of ``text`` could begin ``tag``."""
    for n in range(min(len(tag) - 1, len(text)), 0, -1):
        if tag.startswith(text[-n:]):
            return n
    return 0
