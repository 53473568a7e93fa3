"""Personas: built-in and the user's, matching, saving (checked), deleting; a conversation's own
system prompt is what its requests send."""

import pytest

from app.errors import InvalidRequest, UsageError
from app.ui.personas import BUILTIN, Personas
from tests.unit.conftest import run
from tests.unit.fakes import within
from tests.unit.ui.test_chat import MemoryKV, make_chat


def test_personas_are_matched_saved_overridden_and_deleted():
    kv = MemoryKV()
    personas = Personas(kv)
    run(personas.load())
    assert [p.name for p in personas.matching("")] == sorted((p.name for p in BUILTIN), key=str.casefold)
    assert [p.name for p in personas.matching("PY tut")] == ["Python tutor"]
    assert [p.name for p in personas.matching("bullet")] == ["Summarizer"]  # found by its prompt
    for name, prompt in (("", "x"), ("a|b", "x"), ("ok", " "), ("ok", "x" * 9000)):
        with pytest.raises(InvalidRequest):
            run(personas.save(name, prompt))
    run(personas.save("  Pirate  ", "Answer like a pirate."))
    run(personas.save("Concise", "Mine: one line."))  # the user's own replaces the built-in one
    again = Personas(MemoryKV(kv.data))
    run(again.load())
    assert again.get("Pirate").prompt == "Answer like a pirate." and again.get("Concise").prompt == "Mine: one line."
    run(again.delete("Concise"))
    assert again.get("Concise").builtin  # the built-in one is back
    with pytest.raises(UsageError):
        run(again.delete("Concise"))


def test_a_conversation_with_a_persona_sends_its_prompt_and_keeps_it():
    async def scenario():
        api, kv, chat = await make_chat()
        conv = chat.use_persona("Pirate", "Answer like a pirate.")
        await chat.send("ahoy")
        other = chat.use_persona(None, None)  # the first has messages: a new conversation
        _, _, reloaded = await make_chat(kv=MemoryKV(kv.data))
        return api, conv, other, reloaded

    api, conv, other, reloaded = run(within(scenario()))
    request = next(c.args[1] for c in api.calls if c.name == "ChunkIterator")
    assert request["messages"][0] == {"role": "system", "content": "Answer like a pirate."}
    assert other is not conv and other.system.peek() is None
    kept = next(c for c in reloaded.conversations.peek() if c.id == conv.id)
    assert (kept.persona.peek(), kept.system.peek()) == ("Pirate", "Answer like a pirate.")
