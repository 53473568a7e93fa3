"""Two tabs over one conversation store: each keeps the other's messages, sees them live, and a
conversation deleted in one stays deleted. The store is in memory; the channel delivers messages
asynchronously, as a BroadcastChannel does, to every tab but the sender."""

import asyncio

from app.ui.conversations import Conversation, ConversationStore, Message
from tests.unit.conftest import run
from tests.unit.fakes import FakeChannels, within
from tests.unit.ui.test_chat import MemoryKV, make_chat, shown, stored


async def open_tab(kv, channels=None):
    """One tab's chat; with ``channels``, joined to the others' (as app/ui/page.py does)."""
    if channels is None:
        _, _, chat = await make_chat(kv=kv)
        return chat
    box = []
    post, _close = channels.open_channel("conversations", lambda message: box[0].receive(message))
    _, _, chat = await make_chat(kv=kv, broadcast=post)
    box.append(chat)
    return chat


async def settle(condition):
    while not condition():
        await asyncio.sleep(0)


def test_two_tabs_answering_in_one_conversation_both_keep_every_message():
    async def scenario():
        kv = MemoryKV()
        a = await open_tab(kv)
        await a.send("from a, first")
        b = await open_tab(kv)  # opens the same conversation; the tabs never hear of each other
        assert b.current.peek().id == a.current.peek().id
        await asyncio.gather(a.send("from a, again"), b.send("from b"))
        return kv, a.current.peek().id

    kv, conv_id = run(within(scenario()))
    texts = [r["content"] for r in stored(kv, conv_id)]
    assert texts[:2] == ["from a, first", "Echo: from a, first"]
    assert sorted(texts[2:]) == sorted(["from a, again", "Echo: from a, again", "from b", "Echo: from b"])
    _, _, reloaded = run(make_chat(kv=MemoryKV(kv.data)))
    assert [m[1] for m in shown(reloaded.current.peek())] == texts  # nothing lost, same order


def test_a_tab_sees_the_other_tabs_messages_as_they_are_written():
    async def scenario():
        kv, channel = MemoryKV(), FakeChannels()
        a = await open_tab(kv, channel)
        b = await open_tab(kv, channel)
        await a.send("hello from a")
        conv = a.current.peek()
        await settle(lambda: b.conversations.peek() and len(b.conversations.peek()[0].messages.peek()) == 2)
        seen = b.conversations.peek()[0]
        b.select(seen.id)
        await b.send("and b answers")
        await settle(lambda: len(conv.messages.peek()) == 4)
        return kv, a, b, conv, seen

    kv, a, b, conv, seen = run(within(scenario()))
    assert seen.id == conv.id and seen.title.peek() == "hello from a"
    assert shown(conv) == shown(seen) == [("user", "hello from a", "done"), ("assistant", "Echo: hello from a", "done"),
                                          ("user", "and b answers", "done"), ("assistant", "Echo: and b answers", "done")]
    # B wrote only its own two messages: A's records were never written twice.
    assert [r["content"] for r in stored(kv, conv.id)] == [m[1] for m in shown(conv)]


def test_a_conversation_deleted_in_one_tab_does_not_come_back_when_the_other_saves_it():
    async def scenario():
        kv = MemoryKV()
        a = await open_tab(kv)
        await a.send("soon gone")
        b = await open_tab(kv)  # has it open, and has not heard of the deletion
        conv_id = a.current.peek().id
        await a.delete(conv_id)
        await b.send("still typing here")  # B writes into the deleted conversation
        return kv, conv_id

    kv, conv_id = run(within(scenario()))
    _, _, reloaded = run(make_chat(kv=kv))
    assert [c.id for c in reloaded.conversations.peek()] == []
    assert [k for k in kv.data if k.startswith(conv_id)] == [conv_id + "#deleted"]  # leftovers tidied


def test_a_deletion_reaches_the_other_tab_and_stops_its_answer_there():
    async def scenario():
        kv, channel = MemoryKV(), FakeChannels()
        a = await open_tab(kv, channel)
        await a.send("shared")
        b = await open_tab(kv, channel)
        conv_id = a.current.peek().id
        b_answer = asyncio.ensure_future(b.send(" ".join(f"w{i}" for i in range(200))))
        await settle(lambda: b.streaming.peek() is not None and b.streaming.peek().text.peek())
        await a.delete(conv_id)
        reply = await b_answer
        return kv, b, reply, conv_id

    kv, b, reply, conv_id = run(within(scenario()))
    assert b.conversations.peek() == [] and b.current.peek() is None
    assert reply.status.peek() == "stopped"
    _, _, reloaded = run(make_chat(kv=MemoryKV(kv.data)))
    assert reloaded.conversations.peek() == []


def test_a_conversation_stored_whole_by_an_older_version_is_read_and_rewritten_per_message():
    old = {"id": "c1", "title": "old one", "titled": False, "created": 10.0, "updated": 20.0,
           "messages": [{"id": "m1", "role": "user", "content": "q", "status": "done", "meta": {}},
                        {"id": "m2", "role": "assistant", "content": "a", "status": "done", "meta": {}}]}

    async def scenario():
        kv = MemoryKV({"c1": old})
        chat = await open_tab(kv)
        assert shown(chat.current.peek()) == [("user", "q", "done"), ("assistant", "a", "done")]
        await chat.send("new")
        return kv

    kv = run(within(scenario()))
    assert "messages" not in kv.data["c1"] and kv.data["c1"]["title"] == "old one"
    assert [r["content"] for r in stored(kv, "c1")] == ["q", "a", "new", "Echo: new"]


def test_malformed_or_own_announcements_change_nothing():
    store = ConversationStore(MemoryKV(), tab="me")
    for message in (None, "x", {}, {"conv": "c1"}, {"conv": {"id": 3}}, {"from": "me", "deleted": "c1"}):
        assert store.receive(message) is None
    remote = store.receive({"from": "other", "conv": {"id": "c1", "title": "t"},
                            "messages": [{"id": "m1", "role": "user", "content": "hi", "at": 1}, {"bad": 1}]})
    assert [r["id"] for r in remote.messages] == ["m1"]


def test_messages_of_two_tabs_sort_by_creation_time_then_position():
    conv = Conversation.from_record({"id": "c", "messages": [
        {"id": "z", "role": "assistant", "content": "a1", "at": 5.0, "n": 1},
        {"id": "a", "role": "user", "content": "q2", "at": 7.0, "n": 2},
        {"id": "y", "role": "user", "content": "q1", "at": 5.0, "n": 0},
    ]})
    assert [m.text.peek() for m in conv.messages.peek()] == ["q1", "a1", "q2"]
    assert Message("user", at=1.0, n=3).order() < Message("user", at=1.0, n=4).order()
