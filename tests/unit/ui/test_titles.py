"""Automatic titles and each conversation's own model: named by the on-device model after the first
exchange, never over the user's own name, never in the way of the next answer; a conversation
brings back the model that answered in it."""

import asyncio
import json

import pytest

from app.client import Client
from app.config import PageConfig
from app.errors import InvalidRequest, UsageError
from app.titles import INSTRUCTION, clean_title, title_request
from app.ui.transfer import FORMAT, VERSION, parse_import
from tests.unit.conftest import run
from tests.unit.fakes import LLAMA, echo, within
from tests.unit.ui.test_chat import MemoryKV, make_chat


@pytest.mark.parametrize("said, title", [
    ("Zebra stripes explained", "Zebra stripes explained"),
    ('"Zebra Stripes Explained."', "Zebra Stripes Explained"),
    ("Title: **Why zebras have stripes**\nBecause...", "Why zebras have stripes"),
    ("\n\n## Apples and pears!\n", "Apples and pears"),
    ("«Le ciel bleu»", "Le ciel bleu"),
    ("a " * 40, ("a " * 30).strip() + "…"),
    ("...", None), ("", None), (None, None),
])
def test_a_title_is_one_short_clean_line(said, title):
    assert clean_title(said) == title
    assert title is None or len(title) <= 61


def test_the_title_request_is_the_exchange_plus_one_instruction():
    exchange = [{"role": "system", "content": "S"}, {"role": "user", "content": "q"},
                {"role": "assistant", "content": "a"}]
    assert title_request(exchange) == [*exchange, {"role": "user", "content": INSTRUCTION}]


def titling(api, *, fail=None, gate=None):
    """The session's titler in small: the backend that answered writes the title (streamed)."""
    asked = []

    async def titler(backend_name, exchange):
        asked.append((backend_name, exchange))
        if gate is not None:
            await gate.wait()
        if fail is not None:
            raise fail
        client = Client(api.backend)
        async with await client.chat.completions.create(messages=title_request(exchange), stream=True) as s:
            async for _ in s:
                pass
        return clean_title(s.content)

    return titler, asked


def answers(request):
    last = request["messages"][-1]["content"]
    return "Title: Stripes of the zebra." if last == INSTRUCTION else echo(request)


async def chat_with(titler=None, **kw):
    api, kv, chat = await make_chat(handler=answers, titler=titler, **kw)
    return api, kv, chat


def test_the_first_exchange_is_named_by_the_model_that_answered_and_kept():
    async def scenario():
        box = type("Box", (), {})()
        titler, asked = titling(box)
        _api, kv, chat = await chat_with(titler)
        box.backend = (await chat._connect()).backend
        await chat.send("why do zebras have stripes")
        await chat.titled()
        conv = chat.current.peek()
        first = conv.title.peek()
        await chat.send("and horses?")
        await chat.titled()
        return conv, first, asked, kv

    conv, first, asked, kv = run(within(scenario()))
    assert first == "Stripes of the zebra" and kv.data[conv.id]["title"] == "Stripes of the zebra"
    assert len(asked) == 1  # only the first exchange names a conversation
    backend, exchange = asked[0]
    assert backend == "webllm"
    assert exchange == [{"role": "user", "content": "why do zebras have stripes"},
                        {"role": "assistant", "content": "Echo: why do zebras have stripes"}]
    assert not conv.titled  # the user may still rename it; a model's title is not the user's
    assert [m.text.peek() for m in conv.messages.peek()][-1] == "Echo: and horses?"  # no title text leaks in


def test_a_rename_wins_and_a_failed_title_keeps_the_first_words():
    async def scenario():
        gate = asyncio.Event()
        box = type("Box", (), {})()
        titler, _ = titling(box, gate=gate)
        _api, kv, chat = await chat_with(titler)
        box.backend = (await chat._connect()).backend
        await chat.send("name me myself")
        conv = chat.current.peek()
        await chat.rename(conv.id, "My own name")
        gate.set()
        await chat.titled()
        failing, _ = titling(box, fail=RuntimeError("engine gone"))
        _api2, _kv2, chat2 = await chat_with(failing)
        await chat2.send("first words stay")
        await chat2.titled()
        return conv, kv, chat2.current.peek()

    renamed, kv, kept = run(within(scenario()))
    assert renamed.title.peek() == "My own name" and kv.data[renamed.id]["title"] == "My own name"
    assert kept.title.peek() == "first words stay"


def test_the_next_message_cancels_a_title_still_being_written():
    async def scenario():
        gate = asyncio.Event()
        box = type("Box", (), {})()
        titler, asked = titling(box, gate=gate)
        _api, _kv, chat = await chat_with(titler)
        box.backend = (await chat._connect()).backend
        await chat.send("quick one")
        pending = chat._titling
        reply = await chat.send("another")  # does not wait for the title
        return chat.current.peek(), pending, reply, asked

    conv, pending, reply, asked = run(within(scenario()))
    assert pending.cancelled() and len(asked) == 1
    assert reply.text.peek() == "Echo: another" and conv.title.peek() == "quick one"


def test_a_conversation_keeps_its_model_and_opening_it_asks_for_that_model_back():
    async def scenario():
        wanted = []

        async def follow(model_id):
            wanted.append(model_id)

        chosen = ["other-model"]
        _api, kv, chat = await chat_with(model=lambda: chosen[0], follow_model=follow)
        await chat.send("hi")
        conv = chat.current.peek()
        chat.new_conversation()
        chat.select(conv.id)
        await asyncio.sleep(0)
        chosen[0] = LLAMA
        chat.select(conv.id)  # already the chosen model: nothing to ask
        await asyncio.sleep(0)
        _api2, _kv2, again = await make_chat(kv=kv)
        return conv, kv, wanted, again.get(conv.id)

    conv, kv, wanted, reloaded = run(within(scenario()))
    assert conv.model.peek() == LLAMA and kv.data[conv.id]["model"] == LLAMA
    assert wanted == [LLAMA]
    assert reloaded.model.peek() == LLAMA  # kept across reloads


def test_an_imported_conversation_keeps_its_model_and_a_bad_one_is_refused():
    def exported(model):
        return json.dumps({"format": FORMAT, "version": VERSION,
                           "conversations": [{"id": "c1", "title": "t", "model": model, "messages": []}]})

    assert parse_import(exported("M"))[0]["model"] == "M"
    with pytest.raises(InvalidRequest, match=r"conversations\[0\]\.model"):
        parse_import(exported(7))


def test_auto_title_is_a_page_choice():
    assert PageConfig.from_dict({}).auto_title is True
    assert PageConfig.from_dict({"auto_title": False}).auto_title is False
    with pytest.raises(UsageError, match="auto_title"):
        PageConfig.from_dict({"auto_title": "yes"})
