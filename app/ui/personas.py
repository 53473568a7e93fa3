"""Personas: saved system prompts, picked for a conversation (``/`` in the composer) and managed in
Settings. A few useful ones come with the app; the user's own are kept in IndexedDB (the ``settings``
store, keys ``persona|<name>``) and one of the same name replaces a built-in one.

    personas = Personas(ScopedKv(KvStore("settings"), "persona"))
    await personas.load()
    personas.matching("py")                 # [Persona("Python tutor", ...)]
    await personas.save("Pirate", "Answer like a pirate.")

Plain Python: unit-tested under CPython.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from app.errors import InvalidRequest, UsageError
from app.ui.store import Signal

NAME = re.compile(r"[^\x00-\x1f\x7f|]{1,60}")
MAX_PROMPT = 8000


@dataclass(frozen=True, slots=True)
class Persona:
    name: str
    prompt: str
    builtin: bool = False


BUILTIN = (
    Persona("Concise", "Answer briefly and directly. Use short paragraphs or lists; no preamble.", True),
    Persona("Python tutor", "You are a patient Python tutor. Explain step by step with small, runnable "
            "examples, and point out common mistakes.", True),
    Persona("Code reviewer", "Review the code the user gives you: correctness first, then clarity and "
            "performance. Quote the lines you comment on and suggest concrete fixes.", True),
    Persona("Translator", "Translate the user's text into English (or into the language they name), "
            "keeping meaning, tone and formatting. Reply with the translation only.", True),
    Persona("Summarizer", "Summarize the user's text in at most five bullet points, then one sentence "
            "with the main takeaway.", True),
)


class Personas:
    """The built-in personas and the user's, in one list (``all``, a Signal) sorted by name."""

    def __init__(self, kv: Any) -> None:
        self._kv = kv
        self.all: Signal[list[Persona]] = Signal(sorted(BUILTIN, key=lambda p: p.name.casefold()))

    async def load(self) -> None:
        stored = await self._kv.items()
        mine = {name: Persona(name, str(record.get("prompt", ""))) for name, record in stored.items()
                if isinstance(record, dict) and record.get("prompt")}
        merged = {p.name: p for p in BUILTIN} | mine
        self.all.set(sorted(merged.values(), key=lambda p: p.name.casefold()))

    def get(self, name: str) -> Persona:
        for persona in self.all.peek():
            if persona.name == name:
                return persona
        raise UsageError(f"no persona {name!r}")

    def matching(self, query: str) -> list[Persona]:
        """Personas whose name contains every word of ``query`` (case-insensitive), names first then prompts."""
        words = query.casefold().split()
        named = [p for p in self.all.peek() if all(w in p.name.casefold() for w in words)]
        described = [p for p in self.all.peek() if p not in named and all(w in p.prompt.casefold() for w in words)]
        return named + described

    async def save(self, name: str, prompt: str) -> Persona:
        name, prompt = " ".join(name.split()), prompt.strip()
        if not NAME.fullmatch(name):
            raise InvalidRequest("a persona needs a name of 1 to 60 characters (no |)", param="name")
        if not prompt:
            raise InvalidRequest("a persona needs its system prompt", param="prompt")
        if len(prompt) > MAX_PROMPT:
            raise InvalidRequest(f"the system prompt is longer than {MAX_PROMPT} characters", param="prompt")
        await self._kv.put(name, {"prompt": prompt})
        await self.load()
        return self.get(name)

    async def delete(self, name: str) -> None:
        """Delete one of the user's personas (a built-in one of that name comes back)."""
        persona = self.get(name)
        if persona.builtin:
            raise UsageError(f"{name!r} comes with the app and cannot be deleted")
        await self._kv.delete(name)
        await self.load()
