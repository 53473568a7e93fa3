"""app.knowledge under CPython: chunking, all-or-nothing adds, exact search, removal, bad input."""

import asyncio
import itertools

import pytest

from app.backends.webllm import WebLLMBackend
from app.errors import FileTooLarge, ModelNotLoaded, NoTextInFile, ShaderF16Unsupported, UnsupportedFile, UsageError
from app.knowledge import CHUNK_CHARS, OVERLAP_CHARS, Knowledge, chunk_text, file_kind, html_text
from tests.unit.conftest import run
from tests.unit.fakes import LLAMA, MODEL_LIST, FakeEngineApi, bag_of_words, within

EMBED = "snowflake-arctic-embed-s-q0f32-MLC-b4"
EMBED_F16 = "Embed-q0f16-MLC-b4"
RECORDS = [*MODEL_LIST,
           {"model": "https://huggingface.co/mlc-ai/snowflake-arctic-embed-s-q0f32-MLC", "model_id": EMBED,
            "model_lib": "x.wasm", "vram_required_MB": 238.71, "model_type": 1},
           {"model": "https://huggingface.co/x/y", "model_id": EMBED_F16, "model_lib": "y.wasm",
            "vram_required_MB": 238.71, "model_type": 1, "required_features": ["shader-f16"]}]


class MemoryKv:
    def __init__(self):
        self.data = {}
        self.puts = 0

    async def items(self):
        return dict(self.data)

    async def put(self, key, value):
        self.puts += 1
        self.data[key] = value

    async def delete(self, key):
        self.data.pop(key, None)


class BagEmbedder:
    def __init__(self, fail_at=None, gate=None):
        self.calls = 0
        self.fail_at = fail_at
        self.gate = gate

    async def embed(self, texts):
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.fail_at == self.calls:
            raise RuntimeError("embedding failed")
        return [bag_of_words(t) for t in texts]


FACTS = [f"The secret code of project {name} is {code}." for name, code in
         [("Aurora", "AX-11"), ("Borealis", "BZ-22"), ("Cobalt", "CQ-33"), ("Dynamo", "DV-44"), ("Ember", "EW-55")]]


def test_markdown_is_cut_at_headings_and_paragraphs_with_overlap():
    para = lambda i: f"Paragraph {i} " + "word " * 60  # ~370 characters each
    text = "# Intro\n\nshort intro\n\n# Body\n\n" + "\n\n".join(para(i) for i in range(10))
    chunks = chunk_text(text)
    assert chunks[0].heading == "Intro" and chunks[0].text == "short intro"
    body = [c for c in chunks if c.heading == "Body"]
    assert len(body) > 3 and all(len(c.text) <= CHUNK_CHARS for c in chunks)
    for before, after in zip(body, body[1:]):  # each next chunk starts with the end of the one before
        tail = after.text.split("\n\n")[0]
        assert tail in before.text and 0 < len(tail) <= OVERLAP_CHARS + 10
    assert text[chunks[0].start:].startswith("short intro")
    assert text[body[1].start:].startswith(body[1].text[:20])


def test_a_long_paragraph_is_cut_at_sentence_ends():
    text = " ".join(f"Sentence number {i} says something." for i in range(200))
    chunks = chunk_text(text, markdown=False)
    assert len(chunks) > 5 and all(len(c.text) <= CHUNK_CHARS for c in chunks)
    assert all(c.text.rstrip().endswith(".") for c in chunks)


def test_html_keeps_headings_and_drops_scripts():
    text = html_text("<html><head><title>t</title><script>var x=1</script></head><body><h2>Prices</h2>"
                     "<p>Tea costs <b>3</b> coins.</p><style>p{}</style></body></html>")
    assert "## Prices" in text and "Tea costs 3 coins." in text and "var x" not in text and "p{}" not in text
    assert [c.heading for c in chunk_text(text)] == ["Prices"]


def test_file_kinds():
    assert [file_kind(n) for n in ("a.md", "b.HTML", "c.pdf", "d.py", "e.txt", "README")] == [
        "markdown", "html", "pdf", "code", "text", "text"]


def test_add_search_remove():
    async def scenario():
        kv = MemoryKv()
        k = Knowledge(BagEmbedder(), kv, clock=itertools.count(1).__next__)
        infos = [await k.add(f"project{i}.md", f"# Project\n\n{fact}") for i, fact in enumerate(FACTS)]
        hits = await k.search("What is the secret code of project Cobalt?", k=3)
        top = hits[0]
        removed = await k.remove(infos[2].id)
        after = await k.search("What is the secret code of project Cobalt?", k=5)
        again = Knowledge(BagEmbedder(), kv)  # another page reads the same store
        return infos, top, removed, after, await again.files(), kv

    infos, top, removed, after, files, kv = run(within(scenario()))
    assert top.name == "project2.md" and "CQ-33" in top.text and top.number == 1 and top.heading == "Project"
    assert removed and "project2.md" not in {h.name for h in after}
    assert [f.name for f in files] == ["project0.md", "project1.md", "project3.md", "project4.md"]
    assert len(kv.data) == 4


def test_with_context_numbers_the_passages_in_the_last_user_message():
    async def scenario():
        k = Knowledge(BagEmbedder(), MemoryKv())
        for i, fact in enumerate(FACTS):
            await k.add(f"p{i}.txt", fact)
        hits = await k.search("code of project Ember", k=2)
        return Knowledge.with_context([{"role": "user", "content": "code of project Ember?"}], hits)

    [message] = run(within(scenario()))
    assert message["role"] == "user"
    assert message["content"].index("[1] p4.txt\nThe secret code of project Ember is EW-55.") < \
        message["content"].index("[2] ") < message["content"].index("Question: code of project Ember?")


def test_a_failed_or_cancelled_add_stores_nothing():
    async def scenario():
        kv = MemoryKv()
        long = "\n\n".join(f"Paragraph {i} " + "word " * 150 for i in range(60))  # many batches
        failing = Knowledge(BagEmbedder(fail_at=2), kv)
        with pytest.raises(RuntimeError):
            await failing.add("long.md", long)
        gate = asyncio.Event()
        slow = Knowledge(BagEmbedder(gate=gate), kv)
        task = asyncio.ensure_future(slow.add("long.md", long))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return kv, await failing.files(), await slow.files()

    kv, files1, files2 = run(within(scenario()))
    assert kv.puts == 0 and kv.data == {} and files1 == [] and files2 == []


def test_bad_input_is_refused_before_anything_is_embedded():
    async def pdf_without_text(data):
        return ["", "  "]

    async def scenario():
        embedder = BagEmbedder()
        k = Knowledge(embedder, MemoryKv(), pdf_text=pdf_without_text, max_bytes=1000)
        errors = []
        for name, data in [("big.txt", b"x" * 1001), ("scan.pdf", b"%PDF-1.4 ..."), ("fake.pdf", b"hello"),
                           ("image.png", b"\x89PNG\r\n\x1a\n\0\0"), ("empty.txt", b"  \n"), ("", b"x")]:
            with pytest.raises(UsageError) as info:
                await k.add(name, data)
            errors.append((type(info.value), str(info.value)))
        with pytest.raises(UsageError):
            await k.search("")
        return errors, embedder.calls

    errors, calls = run(within(scenario()))
    assert [e for e, _ in errors] == [FileTooLarge, NoTextInFile, UnsupportedFile, UnsupportedFile, NoTextInFile,
                                      UsageError]
    assert "big.txt is 0 MB; files of up to 0 MB" in errors[0][1]
    assert "no text layer" in errors[1][1]
    assert calls == 0


# ---------------------------------------------------------------- the web-llm backend's embeddings


def test_embedding_model_is_loaded_beside_the_chat_model_and_kept_across_chat_loads():
    async def scenario():
        api = FakeEngineApi(model_list=RECORDS)
        backend = WebLLMBackend(engine_api=api)
        with pytest.raises(ModelNotLoaded):
            await backend.embed(["x"])
        await backend.load(LLAMA)
        await backend.load_embedding(EMBED)
        vectors = await backend.embed(["red apple", "red apple", "blue sky"])
        await backend.load(LLAMA)  # already loaded: nothing reloaded
        reloads = [c.args[1] for c in api.calls if c.name == "engine_reload"]
        return backend, vectors, reloads

    backend, vectors, reloads = run(within(scenario()))
    assert reloads == [LLAMA, [LLAMA, EMBED]]
    assert backend.loaded == LLAMA and backend.embedding_model == EMBED
    assert vectors[0] == vectors[1] != vectors[2] and len(vectors[0]) == 384


def test_an_f16_embedding_model_on_a_gpu_without_shader_f16_fails_before_loading():
    async def scenario():
        api = FakeEngineApi(model_list=RECORDS, gpu_features=())
        backend = WebLLMBackend(engine_api=api)
        with pytest.raises(ShaderF16Unsupported):
            await backend.load_embedding(EMBED_F16)
        with pytest.raises(UsageError, match="not an embedding model"):
            await backend.load_embedding(LLAMA)
        return [c.name for c in api.calls]

    assert "engine_reload" not in run(within(scenario()))


def test_a_caller_giving_up_on_the_embedding_load_leaves_both_models_loaded():
    async def scenario():
        api = FakeEngineApi(model_list=RECORDS)
        backend = WebLLMBackend(engine_api=api)
        await backend.load(LLAMA)
        waiter = asyncio.ensure_future(backend.load_embedding(EMBED))
        while "engine_reload" not in [c.name for c in api.calls[1:]] or len([c for c in api.calls if c.name == "engine_reload"]) < 2:
            await asyncio.sleep(0)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        await backend.load_embedding(EMBED)  # joins the load still under way
        return backend, [c.args[1] for c in api.calls if c.name == "engine_reload"]

    backend, reloads = run(within(scenario()))
    assert reloads == [LLAMA, [LLAMA, EMBED]]
    assert (backend.loaded, backend.embedding_model) == (LLAMA, EMBED)


def test_adding_the_same_file_again_replaces_it_in_one_write():
    async def scenario():
        kv = MemoryKv()
        k = Knowledge(BagEmbedder(), kv)
        first = await k.add("a.txt", "alpha beta")
        again = await k.add("a.txt", "alpha beta")
        hits = await k.search("alpha", k=5)
        return first, again, hits, kv

    first, again, hits, kv = run(within(scenario()))
    assert first.id == again.id and len(kv.data) == 1 and kv.puts == 2
    assert [h.name for h in hits] == ["a.txt"]
