"""Automatic conversation titles: after the first exchange, the local model names the conversation.

    messages = title_request(history)       # the history + one instruction (a KV-cache prefix)
    title = clean_title(reply_text)         # one short line, or None when the model said nothing usable

Plain Python: the chat (:mod:`app.ui.chat`) decides when to ask, the session (:mod:`app.session`)
which backend answers (only one on this device: a title is never worth a cloud request).
The request is the conversation as it was sent plus one user instruction, so a local engine that
keeps the conversation in its KV cache prefills only the instruction.
"""

from __future__ import annotations

import re
from typing import Any

INSTRUCTION = ("Write a title for this conversation: three to six words, in the language of the "
               "conversation, no quotes, no punctuation at the end. Reply with the title only.")
MAX_CHARS = 60
MAX_TOKENS = 24  # a title is a few words; a model that rambles is cut here

_LABEL = re.compile(r"^(?:\*\*)?(?:title|titel|titre|título)\s*[:：-]\s*", re.IGNORECASE)
_WRAPPERS = "\"'“”‘’«»`*_#"


def title_request(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``history`` (system prompt, first question, first answer) and the instruction."""
    return [*history, {"role": "user", "content": INSTRUCTION}]


def clean_title(text: str | None) -> str | None:
    """The title in a model's reply: its first non-empty line without labels, quotes, markup or a
    final full stop, at most :data:`MAX_CHARS` characters (cut at a word); None when nothing is left."""
    if not text:
        return None
    line = next((ln for ln in (raw.strip() for raw in text.splitlines()) if ln), "")
    line = _LABEL.sub("", line.lstrip("#*> ").strip())
    line = " ".join(line.strip(_WRAPPERS).split()).strip(_WRAPPERS).rstrip(".!:;,。").strip()
    if not any(ch.isalnum() for ch in line):
        return None
    if len(line) > MAX_CHARS:
        cut = line[: MAX_CHARS + 1].rsplit(" ", 1)[0] if " " in line[:MAX_CHARS] else line[:MAX_CHARS]
        line = cut.rstrip(" ,;:-") + "…"
    return line
