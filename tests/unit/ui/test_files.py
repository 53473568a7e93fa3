"""The chat answering from the user's files (ChatState with ``retrieve``) and the Files sheet's state."""

import asyncio

from app.knowledge import Knowledge
from app.ui.files import FilesState
from app.ui.store import Signal
from tests.unit.conftest import run
from tests.unit.fakes import within
from tests.unit.test_knowledge import BagEmbedder, MemoryKv
from tests.unit.ui.test_chat import make_chat


async def library(*docs):
    k = Knowledge(BagEmbedder(), MemoryKv())
    for name, text in docs:
        await k.add(name, text)
    return k


def test_an_answer_gets_the_matching_passages_and_keeps_them_as_its_sources():
    async def scenario():
        k = await library(("tea.md", "# Tea\n\nJade tea is brewed at 80 degrees."), ("boots.txt", "Tundra boots weigh 900 grams."))
        api, kv, chat = await make_chat(retrieve=lambda q: k.search(q, k=1))
        reply = await chat.send("At what temperature is jade tea brewed?")
        return api, reply

    api, reply = run(within(scenario()))
    sent = api.sent()[-1]["messages"][-1]["content"]
    assert sent.startswith("Answer from these passages")
    assert "[1] tea.md — Tea\nJade tea is brewed at 80 degrees." in sent
    assert sent.endswith("Question: At what temperature is jade tea brewed?")
    assert reply.meta.peek()["sources"] == [{"n": 1, "name": "tea.md", "heading": "Tea", "text": "Jade tea is brewed at 80 degrees.",
                                             "file_id": reply.meta.peek()["sources"][0]["file_id"], "chunk": 0}]
    assert reply.status.peek() == "done"


def test_a_failed_search_is_said_and_the_question_goes_without_passages():
    async def failing(_question):
        from app.errors import ShaderF16Unsupported

        raise ShaderF16Unsupported("the embedding model has f16 weights and this GPU has no shader-f16")

    async def scenario():
        api, kv, chat = await make_chat(retrieve=failing)
        reply = await chat.send("hello")
        return api, reply

    api, reply = run(within(scenario()))
    assert api.sent()[-1]["messages"][-1]["content"] == "hello"
    assert reply.meta.peek()["sources_error"].startswith("ShaderF16Unsupported: the embedding model has f16")
    assert reply.status.peek() == "done"


def test_files_state_refuses_a_file_too_large_from_its_size_and_cancels_without_storing():
    async def scenario():
        kv = MemoryKv()
        gate = asyncio.Event()
        k = Knowledge(BagEmbedder(gate=gate), kv)
        state = FilesState(k, Signal(True))
        read = []

        async def reader():
            read.append(1)
            return b"some text"

        refused = state.add("huge.bin", 200 * 2**20, reader)
        said_refused = state.said.peek()
        job = state.add("notes.txt", 9, reader)
        while not state.jobs.peek() or state.jobs.peek()[0].stage != "embedding":
            await asyncio.sleep(0)
        stage = state.jobs.peek()[0].stage
        state.cancel(job.id)
        while state.jobs.peek():
            await asyncio.sleep(0)
        said_cancelled = state.said.peek()
        gate.set()
        state.add("notes.txt", 9, reader)
        while state.jobs.peek() or not state.files.peek():
            await asyncio.sleep(0)
        return refused, said_refused, stage, said_cancelled, state, kv, read

    refused, said_refused, stage, said_cancelled, state, kv, read = run(within(scenario()))
    assert refused is None and said_refused.startswith("FileTooLarge: huge.bin is 200 MB; files of up to 20 MB")
    assert stage == "embedding" and said_cancelled == "Cancelled notes.txt: nothing of it was stored."
    assert [f.name for f in state.files.peek()] == ["notes.txt"] and state.said.peek() == "Added notes.txt: 1 passage."
    assert len(kv.data) == 1 and len(read) == 2  # the refused file was never read
