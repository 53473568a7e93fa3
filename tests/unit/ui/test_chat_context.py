"""The context meter and the overflow policies of the chat, over the real client and web-llm backend with
the fake engine API (which counts prompt tokens as words + 2 per message + 1, like a template would)."""

import asyncio

from app.config import Settings
from app.ui.chat import SUMMARY_INSTRUCTION, ChatState
from app.ui.conversations import SUMMARY_HEADING
from app.ui.store import Signal
from tests.unit.conftest import run
from tests.unit.fakes import LLAMA, within
from tests.unit.ui.test_chat import MemoryKV, make_chat, stored


def prompt_tokens_of(api, index=-1):
    """What the fake engine counts for the ``index``-th chat request (its usage.prompt_tokens)."""
    requests = [c.args[1] for c in api.calls if c.name == "ChunkIterator"]
    return api._usage(requests[index], 0)["prompt_tokens"], requests[index]


def set_window(chat, window):
    async def go():
        client = await chat._connect()
        client.backend.models[LLAMA] = {**client.backend.models[LLAMA], "overrides": {"context_window_size": window}}
    return go()


def test_the_meter_agrees_with_the_engines_count_of_the_request_it_then_sends():
    sentences = ["the quick brown fox jumps over the lazy dog again and again",
                 "tell me about the rivers of europe and which ones are the longest",
                 "now compare them with the rivers of south america in a short table"]

    async def scenario():
        api, kv, chat = await make_chat(settings=Settings(system_prompt="You answer briefly and kindly."))
        for text in sentences:
            await chat.send(text)
        draft = "and which of these rivers can ships sail up from the sea"
        chat.draft.set(draft)
        shown = chat.meter.peek()
        await chat.send(draft)
        return api, shown, chat

    api, shown, chat = run(within(scenario()))
    actual, _ = prompt_tokens_of(api)
    assert shown.exact  # the history was counted by the engine, only the draft estimated
    assert abs(shown.tokens - actual) <= 0.02 * actual, (shown.tokens, actual)
    assert shown.window == 4096 and not shown.dropped
    assert chat.meter.peek().tokens > shown.tokens - 20  # after sending: the history with its new answer


def test_the_meter_follows_the_draft_and_a_new_conversations_first_message_is_calibrated():
    async def scenario():
        api, kv, chat = await make_chat()
        await chat.send("one two three four five six seven eight nine ten eleven twelve thirteen")
        chat.draft.set("")
        empty = chat.meter.peek().tokens
        chat.draft.set("word " * 50)
        typed = chat.meter.peek().tokens
        chat.new_conversation()
        first = "a new question about something else entirely, asked in plain words for once"
        chat.draft.set(first)
        estimate = chat.meter.peek()
        await chat.send(first)
        return api, empty, typed, estimate

    api, empty, typed, estimate = run(within(scenario()))
    assert 45 <= typed - empty <= 60  # fifty words, at the rate learned from the first answer
    actual, _ = prompt_tokens_of(api)
    assert not estimate.exact and abs(estimate.tokens - actual) <= 0.1 * actual, (estimate.tokens, actual)


def test_drop_oldest_leaves_turns_out_says_how_many_and_keeps_answering():
    async def scenario():
        api, kv, chat = await make_chat(settings=Settings(max_tokens=16))
        await set_window(chat, 120)
        replies = [await chat.send(("word " * 30) + str(i)) for i in range(5)]
        chat.draft.set("word " * 30)
        return api, chat, replies

    api, chat, replies = run(within(scenario()))
    assert [r.status.peek() for r in replies] == ["done"] * 5
    assert replies[-1].meta.peek()["dropped"] >= 2
    _, request = prompt_tokens_of(api)
    assert request["messages"][-1]["content"].endswith("4") and request["messages"][0]["role"] == "user"
    plan = chat.meter.peek()
    assert plan.dropped and plan.level == "over" and plan.tokens <= 120


def summarising_handler(request):
    """Echo, except a summary request: a short summary naming how many lines it read."""
    if request["messages"][0]["content"] == SUMMARY_INSTRUCTION:
        lines = request["messages"][-1]["content"].count("\n\n") + 1
        return f"summary of {lines} lines"
    return "ok " + request["messages"][-1]["content"][-1]


def test_summarise_pins_a_summary_sends_it_instead_and_summarises_again_later():
    async def scenario():
        api, kv, chat = await make_chat(handler=summarising_handler,
                                        settings=Settings(max_tokens=16, context_policy="summarise"))
        await set_window(chat, 120)
        replies = [await chat.send(("word " * 30) + str(i)) for i in range(6)]
        return api, kv, chat, replies

    api, kv, chat, replies = run(within(scenario()))
    assert [r.status.peek() for r in replies] == ["done"] * 6
    conv = chat.current.peek()
    summaries = [m for m in conv.messages.peek() if m.role == "summary"]
    assert len(summaries) >= 2  # a later overflow summarised the summary and the next oldest turns
    last = summaries[-1]
    assert last.meta.peek()["summarised"] > summaries[0].meta.peek()["summarised"]
    assert conv.summary() is last
    # Sent: the summary in the system message, then the turns after what it covers.
    _, request = prompt_tokens_of(api)
    assert request["messages"][0] == {"role": "system", "content": f"{SUMMARY_HEADING}\n{last.text.peek()}"}
    assert request["messages"][1]["role"] == "user"
    assert replies[-1].meta.peek()["summarised"] == last.meta.peek()["summarised"]
    # The earlier summary's request read the previous summary too.
    summary_requests = [c.args[1] for c in api.calls if c.name == "ChunkIterator"
                        and c.args[1]["messages"][0]["content"] == SUMMARY_INSTRUCTION]
    assert summary_requests[-1]["messages"][1]["content"].startswith("Earlier summary: ")
    # Kept: a reload shows the summary where it was, and the next request still uses it.
    records = stored(kv, conv.id)
    assert [r["role"] for r in records].count("summary") == len(summaries)

    async def reload():
        again = ChatState(connect=chat._connect, kv=kv, settings=Signal(Settings(context_policy="summarise")))
        await again.load()
        return again

    again = run(within(reload()))
    conv2 = again.current.peek()
    assert conv2.summary().id == last.id
    assert [m.role for m in conv2.messages.peek()] == [m.role for m in conv.messages.peek()]


def test_a_failed_summary_falls_back_to_leaving_turns_out_and_says_so():
    def handler(request):
        if request["messages"][0]["content"] == SUMMARY_INSTRUCTION:
            return ""  # the model wrote nothing
        return "ok"

    async def scenario():
        api, kv, chat = await make_chat(handler=handler, settings=Settings(max_tokens=16, context_policy="summarise"))
        await set_window(chat, 120)
        return [await chat.send(("word " * 30) + str(i)) for i in range(4)], chat

    replies, chat = run(within(scenario()))
    assert [r.status.peek() for r in replies] == ["done"] * 4
    meta = replies[-1].meta.peek()
    assert meta["summary_failed"] == "ValueError: the model wrote no summary" and meta["dropped"] >= 2
    assert chat.current.peek().summary() is None


def test_stop_while_summarising_stops_the_answer_and_pins_nothing():
    async def scenario():
        api, kv, chat = await make_chat(handler=summarising_handler, settings=Settings(max_tokens=16))
        await set_window(chat, 120)
        for i in range(3):  # leaving turns out, until the user picks "summarise"
            await chat.send(("word " * 30) + str(i))
        chat.settings.set(Settings(max_tokens=16, context_policy="summarise"))
        api.paused = True  # the summary's stream waits before its first piece
        task = asyncio.ensure_future(chat.send(("word " * 30) + "3"))
        while not (chat.streaming.peek() and chat.streaming.peek().meta.peek().get("summarising")
                   and api.streams and api.streams[-1].waiting.is_set()):
            await asyncio.sleep(0)
        await chat.stop()
        reply = await task
        api.paused = False
        after = await chat.send("and now?")
        return api, chat, reply, after

    api, chat, reply, after = run(within(scenario()))
    assert reply.status.peek() == "stopped" and reply.text.peek() == ""
    assert "summarising" not in reply.meta.peek()
    # Nothing was pinned by the stopped summary; the next message summarises afresh and is answered.
    summaries = [m for m in chat.current.peek().messages.peek() if m.role == "summary"]
    assert len(summaries) <= 1 and after.status.peek() == "done"


def test_the_calibration_is_kept_and_read_back_and_a_damaged_one_is_ignored():
    class Prefs(MemoryKV):
        async def get(self, key):
            return self.data.get(key)

    async def scenario():
        prefs = Prefs()
        api, kv, chat = await make_chat(prefs=prefs)
        await chat.send("one two three four five six seven eight nine ten eleven twelve thirteen")
        await chat.flush()
        while "token-rates" not in prefs.data:
            await asyncio.sleep(0)
        again = ChatState(connect=chat._connect, kv=kv, prefs=prefs)
        await again.load()
        damaged = Prefs({"token-rates": {LLAMA: {"chars": "x"}, "other": {"chars": 10, "tokens": 5, "turn": "?"}}})
        third = ChatState(connect=chat._connect, kv=MemoryKV(), prefs=damaged)
        await third.load()
        return chat, again, third

    chat, again, third = run(within(scenario()))
    assert again.rates[LLAMA] == chat.rates[LLAMA] and again.rates[LLAMA].per_char() is not None
    assert LLAMA not in third.rates and third.rates["other"].turn is None
