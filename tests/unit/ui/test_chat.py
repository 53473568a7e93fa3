"""Chat intents over the real client and web-llm backend, with the fake engine API and an in-memory
key-value store: what users see in the message list and what is kept for the next visit."""

import asyncio
import json

import pytest

from app.backends.webllm import WebLLMBackend
from app.client import Client
from app.errors import InvalidRequest, UsageError
from app.ui.chat import ChatState, Settings, title_from
from app.ui.store import Signal, effect
from tests.unit.conftest import run
from tests.unit.fakes import LLAMA, PHI_VISION, FakeEngineApi, within


class MemoryKV:
    """The ``conversations`` store, in memory; ``puts`` records each write (one transaction) as stored."""

    def __init__(self, data=None):
        self.data = dict(data or {})
        self.puts = []

    async def write(self, puts, deletes):
        await asyncio.sleep(0)
        for key in deletes:
            self.data.pop(key, None)
        self.data.update(json.loads(json.dumps(puts)))
        self.puts.append(puts)

    async def put(self, key, value):
        await self.write({key: value}, [])

    async def delete(self, key):
        await self.write({}, [key])

    async def items(self):
        return dict(self.data)


def stored(kv, conv_id):
    """The messages of one conversation as stored, in order."""
    records = [v for k, v in kv.data.items() if k.startswith(conv_id + "/")]
    return sorted(records, key=lambda r: (r["at"], r["n"], r["id"]))


async def make_chat(kv=None, handler=None, settings=None, loaded=LLAMA, **chat):
    api = FakeEngineApi(handler=handler)
    backend = WebLLMBackend(engine_api=api)
    await backend.load(loaded)
    client = Client(backend)

    async def connect():
        return client

    kv = kv or MemoryKV()
    c = ChatState(connect=connect, kv=kv, settings=Signal(settings or Settings()), **chat)
    await c.load()
    return api, kv, c


def shown(conv):
    return [(m.role, m.text.peek(), m.status.peek()) for m in conv.messages.peek()]


def test_send_streams_the_reply_and_records_backend_and_rate():
    async def scenario():
        api, kv, chat = await make_chat()
        texts = []
        reply = None

        async def go():
            nonlocal reply
            reply = await chat.send("hello world")

        task = asyncio.ensure_future(go())
        while chat.streaming.peek() is None:
            await asyncio.sleep(0)
        effect(lambda: texts.append(chat.streaming.peek().text.get()) if chat.streaming.peek() else None)
        await task
        return chat, reply, texts, kv, api

    chat, reply, texts, kv, api = run(within(scenario()))
    conv = chat.current.peek()
    assert shown(conv) == [("user", "hello world", "done"), ("assistant", "Echo: hello world", "done")]
    assert conv.title.peek() == "hello world"
    # The text grew token by token (one signal change per streamed piece).
    assert texts[-1] == "Echo: hello world" and len(texts) >= 3
    assert all(b.startswith(a) for a, b in zip(texts, texts[1:]))
    meta = reply.meta.peek()
    assert meta["backend"] == "webllm" and meta["model"] == LLAMA
    assert meta["tokens"] == 3 and meta["tokens_per_s"] == 40.0  # web-llm's own decode rate
    assert meta["finish_reason"] == "stop"
    assert kv.data[conv.id]["title"] == "hello world"
    assert [m["content"] for m in stored(kv, conv.id)] == ["hello world", "Echo: hello world"]
    assert chat.streaming.peek() is None


def test_system_prompt_and_sampling_settings_are_sent():
    async def scenario():
        api, kv, chat = await make_chat(settings=Settings(system_prompt="Be brief.", temperature=0.2, max_tokens=2))
        reply = await chat.send("one two three")
        return api, reply

    api, reply = run(within(scenario()))
    request = next(c.args[1] for c in api.calls if c.name == "ChunkIterator")
    assert request["messages"][0] == {"role": "system", "content": "Be brief."}
    assert request["temperature"] == 0.2 and request["max_tokens"] == 2
    assert reply.text.peek() == "Echo: one " and reply.meta.peek()["finish_reason"] == "length"


def test_stop_keeps_what_arrived_and_marks_it_stopped():
    async def scenario():
        api, kv, chat = await make_chat()
        task = asyncio.ensure_future(chat.send("a b c d e f g h i j k l m n o p"))
        while chat.streaming.peek() is None or len(chat.streaming.peek().text.peek()) < 8:
            await asyncio.sleep(0)
        await chat.stop()
        reply = await task
        return chat, reply, kv

    chat, reply, kv = run(within(scenario()))
    assert reply.status.peek() == "stopped"
    assert reply.meta.peek()["finish_reason"] == "abort"
    text = reply.text.peek()
    assert text.startswith("Echo: a") and not text.endswith("p")
    assert stored(kv, chat.current.peek().id)[-1]["status"] == "stopped"


def test_stop_before_the_first_token_ends_the_reply_and_frees_the_engine():
    async def scenario():
        api, kv, chat = await make_chat()
        api.paused = True  # the engine takes the request and says nothing (a long prefill)
        task = asyncio.ensure_future(chat.send("hello"))
        while not api.streams or not api.streams[-1].waiting.is_set():
            await asyncio.sleep(0)
        await chat.stop()
        reply = await task
        api.paused = False
        again = await chat.send("again")  # the engine's turn was released: the next send answers
        return chat, reply, again, api

    chat, reply, again, api = run(within(scenario()))
    assert reply.status.peek() == "stopped" and reply.text.peek() == ""
    assert chat.streaming.peek() is None
    assert again.status.peek() == "done" and again.text.peek() == "Echo: again"
    assert "engine_interrupt" in api.names()


def test_retry_replaces_the_answer_and_edit_resends_from_that_message():
    async def scenario():
        _, _, chat = await make_chat()
        await chat.send("first")
        second = await chat.send("second")
        conv = chat.current.peek()
        ids_before = [m.id for m in conv.messages.peek()]
        again = await chat.retry(second.id)
        after_retry = shown(conv)
        user_first = conv.messages.peek()[0]
        await chat.edit(user_first.id, "changed")
        return ids_before, again, after_retry, shown(conv), conv

    ids_before, again, after_retry, after_edit, conv = run(within(scenario()))
    assert after_retry == [("user", "first", "done"), ("assistant", "Echo: first", "done"),
                           ("user", "second", "done"), ("assistant", "Echo: second", "done")]
    assert again.id not in ids_before  # a new message, the old one is gone
    assert after_edit == [("user", "changed", "done"), ("assistant", "Echo: changed", "done")]


def test_only_answers_retry_only_user_messages_edit_one_answer_at_a_time():
    async def scenario():
        api, _, chat = await make_chat()
        await chat.send("x")
        user_msg, answer = chat.current.peek().messages.peek()
        errors = []
        for call in (lambda: chat.retry(user_msg.id), lambda: chat.edit(answer.id, "y"),
                     lambda: chat.send("   "), lambda: chat.edit(user_msg.id, "")):
            try:
                await call()
            except UsageError as exc:
                errors.append(type(exc).__name__)
        api.paused = True
        task = asyncio.ensure_future(chat.send("long"))
        while chat.streaming.peek() is None:
            await asyncio.sleep(0)
        try:
            await chat.send("another")
        except UsageError as exc:
            errors.append(str(exc))
        await chat.stop()
        api.streams[-1].gate.set()
        await task
        return errors

    errors = run(within(scenario()))
    assert errors[:4] == ["UsageError", "UsageError", "InvalidRequest", "InvalidRequest"]
    assert "stop it first" in errors[4]


def test_a_failure_ends_the_reply_with_the_error_and_a_notice():
    async def scenario():
        _, _, chat = await make_chat(handler=lambda request: "[[throw]]")

        async def broken():
            raise RuntimeError("no backend configured (HTTP 401: bad key sk-live-0123456789abcdef)")

        chat._connect = broken
        reply = await chat.send("hi")
        return chat, reply

    chat, reply = run(within(scenario()))
    assert reply.status.peek() == "error" and reply.meta.peek()["error"] == "RuntimeError"
    assert "no backend configured" in chat.notice.peek()
    # Kept with the conversation, shown, and forwarded to an embedding host: never with the key.
    assert "sk-live" not in chat.notice.peek() and "sk-live" not in reply.meta.peek()["error_message"]
    assert "[REDACTED]" in reply.meta.peek()["error_message"]
    assert chat.streaming.peek() is None
    # A failed answer is not sent back to the model as history.
    assert chat.current.peek().request_messages("") == [{"role": "user", "content": "hi"}]


def test_streaming_writes_are_throttled_and_a_reload_keeps_the_partial_answer():
    class Clock:
        now = 0.0

        def __call__(self):
            Clock.now += 0.1  # each reading is 100 ms later: a write every third token or so
            return Clock.now

    async def scenario():
        api, kv, chat = await make_chat(clock=Clock(), save_every=0.25)
        api.paused = False
        task = asyncio.ensure_future(chat.send(" ".join(f"w{i}" for i in range(30))))
        # Let some tokens arrive and be written, then "reload" before the answer ends.
        while len(kv.puts) < 3:
            await asyncio.sleep(0)
        snapshot = {k: v for k, v in kv.data.items()}
        partial = stored(MemoryKV(snapshot), chat.current.peek().id)[-1]
        await task
        _, _, reloaded = await make_chat(kv=MemoryKV(snapshot))
        return kv, partial, reloaded

    kv, partial, reloaded = run(within(scenario()))
    assert 3 <= len(kv.puts) < 31  # not one write per token
    assert partial["status"] == "streaming" and partial["content"].startswith("Echo: w0")
    reply = reloaded.current.peek().messages.peek()[-1]
    assert reply.status.peek() == "interrupted" and reply.text.peek() == partial["content"]


def test_conversations_listed_renamed_deleted_and_reloaded_in_recent_order():
    async def scenario():
        _, kv, chat = await make_chat(wall=iter(range(1, 100)).__next__)
        await chat.send("first chat")
        first = chat.current.peek()
        chat.new_conversation()
        await chat.send("second chat")
        second = chat.current.peek()
        await chat.rename(first.id, "  Renamed   one ")
        try:
            await chat.rename(first.id, "   ")
        except InvalidRequest as exc:
            bad = exc.param
        _, _, reloaded = await make_chat(kv=kv)
        titles = [c.title.peek() for c in reloaded.conversations.peek()]
        await chat.delete(second.id)
        _, _, after_delete = await make_chat(kv=kv)
        return titles, bad, chat, after_delete, first

    titles, bad, chat, after_delete, first = run(within(scenario()))
    assert titles == ["second chat", "Renamed one"]
    assert bad == "title"
    assert chat.current.peek() is first
    assert [c.title.peek() for c in after_delete.conversations.peek()] == ["Renamed one"]
    # An untouched new chat is reused, not piled up.
    empty = chat.new_conversation()
    assert chat.new_conversation() is empty


@pytest.mark.parametrize("form, param", [({"temperature": "hot"}, "temperature"), ({"temperature": "3"}, "temperature"),
                                         ({"max_tokens": "0"}, "max_tokens"), ({"max_tokens": "1.5"}, "max_tokens")])
def test_bad_settings_are_rejected_naming_the_field(form, param):
    with pytest.raises(InvalidRequest) as info:
        Settings.parse(form)
    assert info.value.param == param


def test_settings_parse_and_titles():
    assert Settings.parse({"system_prompt": " hi ", "temperature": "0.3", "max_tokens": "64"}) == \
        Settings("hi", 0.3, 64)
    assert title_from("  a\n b  ") == "a b"
    assert len(title_from("x" * 100)) == 48 and title_from("x" * 100).endswith("…")


def test_a_history_longer_than_the_context_window_loses_its_oldest_turns_and_says_so():
    from app.ui.view import meta_line

    sent = []

    def handler(request):
        sent.append(request["messages"])
        return "ok"

    async def scenario():
        api, kv, chat = await make_chat(handler=handler, settings=Settings(system_prompt="be brief", max_tokens=16))
        client = await chat._connect()
        client.backend.models[LLAMA] = {**client.backend.models[LLAMA], "overrides": {"context_window_size": 120}}
        replies = [await chat.send(("word " * 40) + str(i)) for i in range(4)]
        return replies

    replies = run(within(scenario()))
    assert [r.status.peek() for r in replies] == ["done"] * 4  # the chat never dies at the window
    assert "dropped" not in replies[0].meta.peek()
    last = sent[-1]
    assert last[0] == {"role": "system", "content": "be brief"} and last[-1]["content"].endswith("3")
    assert last[1]["role"] == "user" and len(last) < 8
    dropped = replies[-1].meta.peek()["dropped"]
    assert dropped == 7 - (len(last) - 1) and "left out to fit the model's context window" in meta_line(replies[-1])


class FullKV(MemoryKV):
    """A store that refuses every write (as IndexedDB does once the quota is used up) while ``full``."""

    def __init__(self, data=None):
        super().__init__(data)
        self.full = False
        self.refused = 0

    async def write(self, puts, deletes):
        await asyncio.sleep(0)
        if self.full:
            from app.errors import QuotaExceeded

            self.refused += 1
            raise QuotaExceeded("the browser refused to store more: QuotaExceededError")
        await super().write(puts, deletes)


def test_a_refused_save_is_shown_kept_in_memory_and_written_once_space_is_back():
    async def scenario():
        api, kv, chat = await make_chat(kv=FullKV())
        await chat.send("kept?")
        first = chat.current.peek()
        assert stored(kv, first.id)[-1]["status"] == "done"
        assert chat.unsaved.peek() == ""

        kv.full = True
        reply = await within(chat.send("while full"))  # the writer ends; nothing waits forever
        assert reply.status.peek() == "done" and kv.refused >= 1
        said = chat.unsaved.peek()
        assert said.startswith("Not saved") and "quota" in said and "Models" in said
        assert len(stored(kv, first.id)) == 2  # the stored copy is the old one ...
        assert [m[1] for m in shown(first)][2] == "while full"  # ... the chat keeps the new turn

        # Still full: a change in another conversation retries the refused one too, and says so again.
        chat.new_conversation()
        await within(chat.send("elsewhere"))
        second = chat.current.peek()
        assert second.id not in kv.data and chat.unsaved.peek().startswith("Not saved")

        kv.full = False
        await within(chat.rename(second.id, "later"))  # the next change: every refused write goes through
        assert chat.unsaved.peek() == ""
        _, _, reloaded = await make_chat(kv=MemoryKV(kv.data))
        return first, second, reloaded

    first, second, reloaded = run(within(scenario()))
    again = {c.id: c for c in reloaded.conversations.peek()}
    assert shown(again[first.id]) == shown(first) and len(shown(first)) == 4
    assert shown(again[second.id]) == shown(second) and again[second.id].title.peek() == "later"


def test_a_save_failing_for_another_reason_is_named_and_the_writer_goes_on():
    class BrokenKV(MemoryKV):
        broken = True

        async def write(self, puts, deletes):
            if self.broken:
                from app.errors import AppError

                raise AppError("browser storage failed: UnknownError: disk error")
            await super().write(puts, deletes)

    async def scenario():
        api, kv, chat = await make_chat(kv=BrokenKV())
        await within(chat.send("one"))
        assert "UnknownError" in chat.unsaved.peek() and chat.notice.peek() == ""
        kv.broken = False
        await within(chat.send("two"))
        return kv, chat

    kv, chat = run(within(scenario()))
    assert chat.unsaved.peek() == ""
    _, _, reloaded = run(make_chat(kv=MemoryKV(kv.data)))
    assert shown(reloaded.current.peek()) == shown(chat.current.peek())
    assert [m[1] for m in shown(chat.current.peek())][::2] == ["one", "two"]


class ClosedKV(MemoryKV):
    """A store whose connection another tab's newer version closed (static/storage.js StorageClosed)."""

    async def write(self, puts, deletes):
        from app.errors import StorageClosed

        raise StorageClosed("This tab closed its storage because a newer version of the app opened; reload.")


def test_a_save_after_a_newer_version_took_the_storage_says_reload_and_keeps_the_chat():
    async def scenario():
        _api, _kv, chat = await make_chat(kv=ClosedKV())
        reply = await within(chat.send("after the upgrade"))
        return chat, reply

    chat, reply = run(within(scenario()))
    assert reply.status.peek() == "done"
    said = chat.unsaved.peek()
    assert said.startswith("Not saved") and "newer version" in said and "reload" in said
    assert [m[1] for m in shown(chat.current.peek())][0] == "after the upgrade"


PNG = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYGD4DwABBAEAwS2OUAAAAABJRU5ErkJggg=="
CAT = {"url": PNG, "name": "cat.png", "width": 1, "height": 1}


def test_an_attached_image_is_sent_as_a_content_part_kept_with_the_message_and_reloaded():
    async def scenario():
        api, kv, chat = await make_chat(loaded=PHI_VISION)
        reply = await chat.send("what is this?", [CAT])
        _, _, reloaded = await make_chat(kv=MemoryKV(kv.data), loaded=PHI_VISION)
        await chat.send("and now?")  # the image stays in the history that is sent
        return api, kv, chat, reply, reloaded

    api, kv, chat, reply, reloaded = run(within(scenario()))
    requests = [c.args[1] for c in api.calls if c.name == "ChunkIterator"]
    image_part = {"type": "image_url", "image_url": {"url": PNG}}
    assert requests[0]["messages"][-1] == {"role": "user", "content": [
        image_part, {"type": "text", "text": "what is this?"}]}
    assert requests[1]["messages"][0]["content"][0] == image_part
    assert reply.status.peek() == "done" and reply.text.peek() == "Echo: what is this?"
    conv = chat.current.peek()
    assert stored(kv, conv.id)[0]["images"] == [CAT]
    assert reloaded.current.peek().messages.peek()[0].images == (CAT,)
    assert chat.search("png") == [] and chat.search("base64") == []  # images are not searched


def test_a_bad_image_is_refused_before_anything_is_stored():
    async def scenario():
        api, kv, chat = await make_chat(loaded=PHI_VISION)
        errors = []
        for bad in ([{"url": "data:image/bmp;base64,Qk0=", "name": "x.bmp"}],
                    [{"url": "data:image/png;base64," + "A" * (28 << 20), "name": "big.png"}],
                    [CAT] * 9):
            try:
                await chat.send("look", bad)
            except InvalidRequest as exc:
                errors.append(str(exc))
        return api, kv, chat, errors

    api, kv, chat, errors = run(within(scenario()))
    assert len(errors) == 3 and "image/png" in errors[0] and "20 MiB" in errors[1] and "at most 8" in errors[2]
    assert kv.data == {} and chat.current.peek() is None
    assert not [c for c in api.calls if c.name == "ChunkIterator"]


def test_an_image_for_a_text_only_model_ends_in_a_reply_that_says_to_choose_a_vision_model():
    async def scenario():
        api, kv, chat = await make_chat()  # Llama: text only
        return api, await chat.send("what is this?", [CAT])

    api, reply = run(within(scenario()))
    assert reply.status.peek() == "error" and reply.meta.peek()["error"] == "VisionUnavailable"
    assert "vision model" in reply.meta.peek()["error_message"]
    assert not [c for c in api.calls if c.name == "ChunkIterator"]  # the engine never saw it
