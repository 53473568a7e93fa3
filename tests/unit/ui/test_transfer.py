"""Conversations exported and imported (JSON, Markdown) and searched, under CPython over the real chat
state and an in-memory store."""

import json

import pytest

from app.errors import InvalidRequest
from app.ui.transfer import export_json, export_markdown, parse_import
from tests.unit.conftest import run
from tests.unit.fakes import within
from tests.unit.ui.test_chat import MemoryKV, make_chat


async def chat_with_two():
    _, kv, chat = await make_chat()
    await chat.send("first question")
    chat.new_conversation()
    await chat.send("second **one**")
    await chat.rename(chat.current.peek().id, "Renamed")
    return kv, chat


def body(text):
    data = json.loads(text)
    data.pop("exported")
    return data


def test_export_delete_all_import_gives_the_same_export_and_survives_a_reload():
    async def scenario():
        kv, chat = await chat_with_two()
        before = export_json(chat.conversations.peek(), exported=1.0)
        deleted = await chat.delete_all()
        after_delete = {k for k in kv.data if not k.endswith("#deleted")}
        added = await chat.import_records(parse_import(before))
        again = export_json(chat.conversations.peek(), exported=2.0)
        _, _, reloaded = await make_chat(kv=MemoryKV(kv.data))
        return before, deleted, after_delete, added, again, reloaded

    before, deleted, after_delete, added, again, reloaded = run(within(scenario()))
    assert deleted == 2 and after_delete == set() and added == (2, 0)
    assert body(again) == body(before)
    assert body(export_json(reloaded.conversations.peek(), exported=0)) == body(before)


def test_a_malformed_import_names_the_field_and_changes_nothing():
    async def scenario():
        kv, chat = await chat_with_two()
        good = json.loads(export_json(chat.conversations.peek(), exported=1.0))
        stored = dict(kv.data)
        errors = []
        bad_files = ["not json", json.dumps({"format": "other"}), json.dumps({**good, "version": 2})]
        for path, value in ((("conversations", 1, "messages", 0, "role"), "bot"),
                            (("conversations", 0, "created"), -1), (("conversations", 0, "id"), "a/b"),
                            (("conversations", 1, "messages", 1, "content"), 5)):
            broken = json.loads(json.dumps(good))
            target = broken
            for key in path[:-1]:
                target = target[key]
            target[path[-1]] = value
            bad_files.append(json.dumps(broken))
        twice = json.loads(json.dumps(good))
        twice["conversations"].append(twice["conversations"][0])
        bad_files.append(json.dumps(twice))
        for text in bad_files:
            with pytest.raises(InvalidRequest) as info:
                await chat.import_records(parse_import(text))
            errors.append(str(info.value))
        return errors, stored, kv

    errors, stored, kv = run(within(scenario()))
    assert all(e.endswith("nothing was imported") for e in errors), errors
    assert "not JSON" in errors[0] and "not an export of this app" in errors[1] and errors[2].startswith("version:")
    assert errors[3].startswith("conversations[1].messages[0].role: must be one of user, assistant, summary (got 'bot')")
    assert errors[4].startswith("conversations[0].created:") and errors[5].startswith("conversations[0].id:")
    assert errors[6].startswith("conversations[1].messages[1].content: must be text")
    assert errors[7].startswith("conversations[2].id:") and "appears twice" in errors[7]
    assert kv.data == stored


def test_importing_what_is_already_here_skips_it():
    async def scenario():
        _, chat = await chat_with_two()
        return await chat.import_records(parse_import(export_json(chat.conversations.peek(), exported=1.0)))

    assert run(within(scenario())) == (0, 2)


def test_markdown_export_reads_as_the_conversation():
    async def scenario():
        _, chat = await chat_with_two()
        return export_markdown(chat.conversations.peek())

    text = run(within(scenario()))
    assert text.startswith("# Renamed\n\n## You\n\nsecond **one**\n\n## Assistant\n\nEcho: second **one**\n")
    assert "# first question\n" in text


def test_search_finds_titles_and_message_text_and_follows_changes():
    async def scenario():
        _, chat = await chat_with_two()
        found = {q: [c.title.peek() for c in chat.search(q)] for q in ("", "renamed", "ECHO: FIRST", "second one",
                                                                         "nothing like it")}
        await chat.send("a brand new word: zebra")
        found["zebra"] = [c.title.peek() for c in chat.search("zebra")]
        return found

    found = run(within(scenario()))
    assert found[""] == ["Renamed", "first question"]
    assert found["renamed"] == ["Renamed"] and found["ECHO: FIRST"] == ["first question"]
    assert found["second one"] == ["Renamed"] and found["nothing like it"] == []
    assert found["zebra"] == ["Renamed"]  # the cache saw the new message


def test_search_matches_every_word_and_keeps_its_index_until_a_text_changes():
    from app.ui.conversations import Conversation, Message

    async def scenario():
        _, _, chat = await make_chat()
        chat.conversations.set([Conversation(id=f"c{i}", title=f"chat {i}", messages=[
            Message("user", f"question {i} about topic{i % 37}"), Message("assistant", "an answer")])
            for i in range(1000)])
        found = [c.id for c in chat.search("topic5 QUESTION")]
        index = dict(chat._search_cache)
        again = [c.id for c in chat.search("999")]
        kept = all(chat._search_cache[k] is v for k, v in index.items())
        chat.conversations.peek()[0].messages.peek()[1].append(" now with topic5")
        changed = [c.id for c in chat.search("topic5")]
        return found, again, kept, changed

    found, again, kept, changed = run(scenario())
    assert found == [f"c{i}" for i in range(1000) if i % 37 == 5] and again == ["c999"]
    assert kept  # a second search folds no text again (bench/search.py measures it)
    assert changed[0] == "c0" and len(changed) == len(found) + 1


def test_a_summary_must_say_what_it_stands_for():
    from app.ui.transfer import parse_import

    def export(summary_meta):
        return json.dumps({"format": "py-chat-conversations", "version": 1, "conversations": [{
            "id": "c1", "messages": [{"id": "m1", "role": "user", "content": "hi"},
                                     {"id": "s1", "role": "summary", "content": "they said hi", "meta": summary_meta}]}]})

    assert parse_import(export({"summarised": 1, "until": "m1"}))[0]["messages"][1]["role"] == "summary"
    with pytest.raises(InvalidRequest, match=r"conversations\[0\]\.messages\[1\]\.meta\.summarised: must be a whole"):
        parse_import(export({"until": "m1"}))
    with pytest.raises(InvalidRequest, match=r"conversations\[0\]\.messages\[1\]\.meta\.until: names no message"):
        parse_import(export({"summarised": 1, "until": "gone"}))


def test_a_summary_goes_out_and_comes_back_in_and_is_used_again():
    from app.config import Settings
    from app.ui.chat import SUMMARY_INSTRUCTION
    from app.ui.conversations import SUMMARY_HEADING
    from tests.unit.fakes import LLAMA

    def handler(request):
        return "they talked about bees" if request["messages"][0]["content"] == SUMMARY_INSTRUCTION else "ok"

    async def scenario():
        api, kv, chat = await make_chat(handler=handler, settings=Settings(max_tokens=16, context_policy="summarise"))
        backend = (await chat._connect()).backend
        backend.models[LLAMA] = {**backend.models[LLAMA], "overrides": {"context_window_size": 120}}
        for i in range(4):
            await chat.send(("word " * 30) + str(i))
        text = export_json(chat.conversations.peek(), exported=1.0)
        await chat.delete_all()
        added, _ = await chat.import_records(parse_import(text))
        return chat, text, added

    chat, text, added = run(within(scenario()))
    conv = chat.current.peek()
    assert added == 1 and conv.summary() is not None
    assert conv.request_messages("")[0]["content"] == f"{SUMMARY_HEADING}\n{conv.summary().text.peek()}"
    assert "## Summary of " in export_markdown([conv])


def test_images_go_out_and_come_back_in_and_a_bad_one_is_refused_whole():
    from tests.unit.fakes import PHI_VISION
    from tests.unit.ui.test_chat import CAT

    async def scenario():
        _, kv, chat = await make_chat(loaded=PHI_VISION)
        await chat.send("what is this?", [CAT])
        text = export_json(chat.conversations.peek(), exported=1.0)
        markdown = export_markdown(chat.conversations.peek())
        await chat.delete_all()
        added = await chat.import_records(parse_import(text))
        errors = []
        for bad in ({"url": "data:image/svg+xml;base64,PHN2Zz4=", "name": "x.svg", "width": 1, "height": 1},
                    {"url": "https://example.com/cat.png", "name": "cat", "width": 1, "height": 1},
                    {**CAT, "width": -1}):
            broken = json.loads(text)
            broken["conversations"][0]["messages"][0]["images"] = [bad]
            with pytest.raises(InvalidRequest) as info:
                await chat.import_records(parse_import(json.dumps(broken)))
            errors.append(str(info.value))
        return text, markdown, added, chat, errors

    text, markdown, added, chat, errors = run(within(scenario()))
    assert added == (1, 0) and chat.conversations.peek()[0].messages.peek()[0].images == (CAT,)
    assert body(export_json(chat.conversations.peek(), exported=2.0)) == body(text)
    assert "*[image: cat.png, 1x1]*\n\nwhat is this?" in markdown
    assert errors[0].startswith("conversations[0].messages[0].images[0].url:") and "image/png" in errors[0]
    assert "inline data:image" in errors[1] and "whole numbers of pixels" in errors[2]
    assert all(e.endswith("nothing was imported") for e in errors)
