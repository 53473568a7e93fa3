"""Chat with your files: app.knowledge in the page, over web-llm's real worker with the engine double.

The embedding model is a web-llm record with model_type 1; web-llm's own MLCEngine.embedding() runs,
only the EmbeddingPipeline is the double's (a normalised hashed bag of words: same words, close
vectors), so which passage comes back is exact and repeatable. Vectors and text go to IndexedDB.
"""

from __future__ import annotations

import json

import pytest

from tests.browser.conftest import RECORD_WORKER_MESSAGES, PagePython, PyError
from tests.browser.double import CHAT_MODEL, EMBED_F16_MODEL, EMBED_MODEL
from tests.browser.pdf_fixture import make_pdf
from tests.browser.ui_helpers import answers, confirm, open_chat, open_sheet, shot, ui_site

# 20 small documents, each holding one fact, in the kinds users add; a question per fact, in other words.
DOCS = [
    ("aurora.md", "# Project Aurora\n\nAurora ships its first satellite in March from the Kourou launch site.\n\n"
                  "## Team\n\nThe team has nine engineers.", "When does Aurora ship its first satellite?", "March"),
    ("bakery.txt", "The bakery on Elm Street sells rye bread every Tuesday for four coins.",
     "What does the Elm Street bakery sell on Tuesday?", "rye bread"),
    ("cobalt.html", "<html><body><h1>Cobalt mine</h1><p>The Cobalt mine produces 40 tonnes of ore daily.</p>"
                    "<script>var ignored = 1;</script></body></html>", "How much ore does the Cobalt mine produce?",
     "40 tonnes"),
    ("dragon.md", "# Dragons\n\nThe red dragon Vermax sleeps in the Ashen caves during winter.",
     "Where does the dragon Vermax sleep?", "Ashen caves"),
    ("ember.py", 'def ember_timeout():\n    """The Ember service times out after 42 seconds."""\n    return 42\n',
     "After how many seconds does the Ember service time out?", "42 seconds"),
    ("falcon.txt", "Falcon routers forward packets using the Kestrel protocol on port 7443.",
     "Which port do Falcon routers use?", "7443"),
    ("garden.md", "# Garden\n\nTomatoes in the greenhouse garden need watering twice a day in July.",
     "How often do greenhouse tomatoes need watering?", "twice a day"),
    ("harbor.txt", "Ferries leave Harbor Point for Gull Island every ninety minutes.",
     "How often do ferries leave Harbor Point for Gull Island?", "ninety minutes"),
    ("iris.md", "# Iris telescope\n\nThe Iris telescope mirror measures 6.5 metres across.",
     "How wide is the Iris telescope mirror?", "6.5 metres"),
    ("jade.txt", "Jade tea is brewed at 80 degrees for three minutes.",
     "At what temperature is jade tea brewed?", "80 degrees"),
    ("kiln.md", "# Kiln\n\nThe pottery kiln fires stoneware at 1280 Celsius.",
     "At what temperature does the pottery kiln fire stoneware?", "1280"),
    ("lantern.txt", "The Lantern festival in Oakridge starts on the ninth of October.",
     "When does the Oakridge Lantern festival start?", "ninth of October"),
    ("meteor.md", "# Meteor\n\nMeteor bikes weigh 7 kilograms thanks to a carbon frame.",
     "How much do Meteor bikes weigh?", "7 kilograms"),
    ("nebula.js", "// Nebula cache: entries expire after 15 minutes\nexport const NEBULA_TTL_MINUTES = 15;\n",
     "When do Nebula cache entries expire?", "15 minutes"),
    ("orchard.txt", "The orchard grows Pinova apples on twelve hectares near Lindau.",
     "Which apples does the orchard near Lindau grow?", "Pinova"),
    ("piano.md", "# Piano lessons\n\nPiano lessons with Mrs Okafor cost 30 euros per hour.",
     "How much do piano lessons with Mrs Okafor cost?", "30 euros"),
    ("quartz.txt", "Quartz watches from Selden keep time within five seconds per month.",
     "How accurate are Selden quartz watches?", "five seconds"),
    ("river.html", "<h2>River Tamsin</h2><p>The river Tamsin floods the lower meadows every April.</p>",
     "When does the river Tamsin flood the meadows?", "April"),
    ("saturn.md", "# Saturn rover\n\nThe Saturn rover battery lasts 11 hours on one charge.",
     "How long does the Saturn rover battery last?", "11 hours"),
    ("tundra.txt", "Tundra boots are rated for minus 40 degrees and weigh 900 grams a pair.",
     "What cold are Tundra boots rated for?", "minus 40"),
]


@pytest.fixture(scope="module")
def site(serve, tmp_path_factory):
    return ui_site(serve, tmp_path_factory.mktemp("knowledge"))


@pytest.fixture
def py(page, site):
    page.add_init_script(RECORD_WORKER_MESSAGES)
    w = open_chat(page, site)
    run = PagePython(page)
    run("from app import session\nknowledge = session.current.knowledge()\nbackend = session.current.local_backend()")
    yield run
    w.assert_clean()


def add_all(py):
    return py(f"""
progress = []
for name, text, _q, _a in {json.dumps(DOCS)}:
    await knowledge.add(name, text, on_progress=progress.append)
[(p["stage"], p["done"], p["total"]) for p in progress[:3]], [f.name for f in await knowledge.files()]
""")


def test_each_question_finds_its_passage_in_the_top_three_and_the_vectors_are_kept(py, page):
    progress, names = add_all(py)
    assert progress == [["reading", 0, 1], ["embedding", 0, 2], ["embedding", 2, 2]]  # aurora.md: 2 sections
    assert names == [d[0] for d in DOCS]
    ranks = py(f"""
ranks = []
for name, _t, question, answer in {json.dumps(DOCS)}:
    hits = await knowledge.search(question, k=3)
    ranks.append(next((h.number for h in hits if h.name == name and answer in h.text), None))
ranks
""")
    print(f"retrieval: {sum(r == 1 for r in ranks)}/20 at rank 1, {sum(r is not None for r in ranks)}/20 in the top 3")
    assert all(r is not None for r in ranks), list(zip([d[0] for d in DOCS], ranks))
    # web-llm's engine held the embedding model (reload, then embeddings through its worker protocol).
    assert py("backend.embedding_model") == EMBED_MODEL
    assert "embedding" in page.evaluate("window.__toWorker")

    # A new page (a reload) reads the files and vectors back from IndexedDB and searches them.
    page.reload()
    page.wait_for_selector("#chat[data-state=ready]", timeout=60_000)
    again = PagePython(page)
    got = again("""
from app import session
k = session.current.knowledge()
hits = await k.search("Which port do Falcon routers use?", k=1)
[len(await k.files()), hits[0].name, hits[0].text]
""")
    assert got == [20, "falcon.txt", "Falcon routers forward packets using the Kestrel protocol on port 7443."]


def test_the_chat_model_and_the_embedding_model_share_one_engine(py):
    add_all(py)
    got = py(f"""
await session.current.load_model({CHAT_MODEL!r})
client = await session.current.client()
hits = await knowledge.search("How much do piano lessons with Mrs Okafor cost?", k=2)
messages = knowledge.with_context([{{"role": "user", "content": "Piano price?"}}], hits)
reply = await client.chat.completions.create(messages=messages)
[backend.loaded, backend.embedding_model, hits[0].name, reply.choices[0].message.content]
""")
    loaded, embedding, name, answer = got
    assert (loaded, embedding, name) == (CHAT_MODEL, EMBED_MODEL, "piano.md")
    # The double echoes what it was sent: the numbered passage, then the question.
    assert "[1] piano.md — Piano lessons\nPiano lessons with Mrs Okafor cost 30 euros per hour." in answer
    assert answer.endswith("Question: Piano price?")


def test_remove_deletes_the_file_and_its_vectors(py):
    add_all(py)
    got = py("""
from app import ffi
target = next(f for f in await knowledge.files() if f.name == "jade.txt")
stored_before = [k for k in await ffi.kv_items("knowledge")]
removed = await knowledge.remove(target.id)
stored_after = [k for k in await ffi.kv_items("knowledge")]
hits = await knowledge.search("At what temperature is jade tea brewed?", k=20)
[removed, len(stored_before), len(stored_after), "file|" + target.id in stored_after, [h.name for h in hits]]
""")
    removed, before, after, still, names = got
    assert removed and before == 20 and after == 19 and not still
    assert "jade.txt" not in names and len(names) == 20  # 21 chunks (aurora.md has 2) less jade.txt's one


def test_bad_input_gets_a_clear_error_and_nothing_is_stored(py):
    got = py("""
from app import ffi
errors = []
for name, data in [("huge.txt", bytes(200 * 2**20)), ("photo.png", b"\\x89PNG\\r\\n\\x1a\\n\\0\\0\\0\\rIHDR"),
                   ("empty.md", b"   \\n\\n ")]:
    try:
        await knowledge.add(name, data)
    except Exception as exc:
        errors.append([type(exc).__name__, str(exc)])
data = None
[errors, await ffi.kv_items("knowledge")]
""")
    errors, stored = got
    assert errors == [
        ["FileTooLarge", "huge.txt is 200 MB; files of up to 20 MB can be added (split it, or add the parts you need)"],
        ["UnsupportedFile", "photo.png: this is not a text file (binary content); add text, Markdown, HTML, PDF or "
                            "source files"],
        ["NoTextInFile", "empty.md has no text to add"],
    ]
    assert stored == {}


def test_an_embedding_model_that_cannot_run_here_fails_before_loading(py):
    features = py("from app.ffi import probe_webgpu\n(await probe_webgpu())['features']")
    if "shader-f16" in features:
        pytest.skip("this GPU adapter has shader-f16")
    with pytest.raises(PyError) as info:
        py(f"await backend.load_embedding({EMBED_F16_MODEL!r})")
    assert info.value.type == "ShaderF16Unsupported"
    assert "has f16 weights and this GPU/browser has no shader-f16" in info.value.message
    assert py("backend.embedding_model") is None


def test_files_sheet_adds_files_with_progress_and_the_answer_cites_the_passage(page, site, tmp_path):
    """A user adds two files and a 200 MB one in the Files sheet: the big one is refused from its size
    (never read), the others are listed with their passages; a question's answer lists the passage it
    was given as [1], and a click on [1] in the answer opens it; Delete removes a file and its passages."""
    w = open_chat(page, site)
    tea = tmp_path / "tea.md"
    tea.write_text("# Tea\n\nJade tea is brewed at 80 degrees for three minutes.\n")
    boots = tmp_path / "boots.txt"
    boots.write_text("Tundra boots are rated for minus 40 degrees.\n")
    huge = tmp_path / "huge.txt"
    with huge.open("wb") as f:  # sparse: 200 MB on paper, nothing written
        f.truncate(200 * 2**20)
    sheet = open_sheet(page, "files")
    assert page.inner_text("#files-list") == "No files yet."
    page.set_input_files("#files-input", [str(huge)])
    page.wait_for_selector("#files-said:has-text('FileTooLarge')")
    assert page.inner_text("#files-said") == ("FileTooLarge: huge.txt is 200 MB; files of up to 20 MB can be added "
                                              "(split it, or add the parts you need)")
    page.set_input_files("#files-input", [str(tea), str(boots)])
    page.wait_for_function("() => document.querySelectorAll('#files-list li[data-id]').length === 2", timeout=60_000)
    assert page.locator("#files-jobs li").count() == 0
    listed = page.locator("#files-list li[data-id]").all_inner_texts()
    assert [t.split("\n")[0].split(" ")[0] for t in listed] == ["tea.md", "boots.txt"]
    assert "markdown, 1 passage" in listed[0]
    shot(page, "files-sheet")

    sheet.locator(".sheet-close").click()
    page.fill("#prompt", "At what temperature is jade tea brewed?")
    page.click("#send")
    answer = answers(page).last
    page.wait_for_selector("#messages .msg-assistant[data-status=done]", timeout=60_000)
    assert "[1] tea.md — Tea" in answer.locator(".body").inner_text()  # the double echoes the passages it got
    source = answer.locator(".sources details.source").first
    assert source.locator("summary").inner_text() == "[1] tea.md — Tea"
    assert not source.locator(".passage").is_visible()
    # "[1]" in the answer's text is a button (render.js, after sanitizing): it opens the passage.
    answer.locator(".body").get_by_role("button", name="Source 1").first.click()
    assert source.locator(".passage").is_visible()
    assert source.locator(".passage").inner_text() == "Jade tea is brewed at 80 degrees for three minutes."
    assert page.evaluate("() => document.activeElement.textContent") == "[1] tea.md — Tea"
    shot(page, "files-answer-sources")

    open_sheet(page, "files")
    page.locator("#files-list li", has_text="tea.md").get_by_role("button", name="Delete tea.md").click()
    assert confirm(page) == "Delete tea.md and its passages?"
    page.wait_for_selector("#files-said:has-text('Deleted tea.md')")
    assert page.locator("#files-list li[data-id]").count() == 1
    stored = page.evaluate("""() => new Promise((resolve) => {
      const open = indexedDB.open('webllm-py');
      open.onsuccess = () => { const r = open.result.transaction('knowledge').objectStore('knowledge').getAll();
        r.onsuccess = () => { open.result.close(); resolve(r.result.map((f) => f.name)); }; };
    })""")
    assert stored == ["boots.txt"]
    w.assert_clean()


def test_pdf_text_layers_are_read_with_pdfjs_and_a_pdf_without_text_is_refused(py):
    """PDFs written by the test: two pages of text are read (pdf.js in its worker) page by page and
    retrieved; a PDF of drawings only, and bytes that are not a PDF, get clear errors; nothing of
    them is stored."""
    manual = make_pdf(["Pump manual", "The Orca pump needs new seals every 600 hours.\nUse seal kit K-7."])
    scan = make_pdf([None, None])
    got = py(f"""
from app import ffi
import base64
info = await knowledge.add("manual.pdf", base64.b64decode({__import__("base64").b64encode(manual).decode()!r}))
hits = await knowledge.search("How often does the Orca pump need new seals?", k=1)
errors = []
for name, data in [("scan.pdf", base64.b64decode({__import__("base64").b64encode(scan).decode()!r})),
                   ("broken.pdf", b"%PDF-1.4 this is not really a PDF")]:
    try:
        await knowledge.add(name, data)
    except Exception as exc:
        errors.append([type(exc).__name__, str(exc)])
[info.kind, info.chunks, hits[0].name, hits[0].heading, hits[0].text, errors, sorted(v["name"] for v in (await ffi.kv_items("knowledge")).values())]
""")
    kind, chunks, name, heading, text, errors, stored = got
    assert (kind, chunks, name, heading) == ("pdf", 2, "manual.pdf", "Page 2")
    assert "The Orca pump needs new seals every 600 hours." in text and "seal kit K-7" in text
    assert errors[0] == ["NoTextInFile", "scan.pdf has no text layer (a scan or images only): run OCR on it first, "
                                         "then add it again"]
    assert errors[1][0] == "UnsupportedFile" and errors[1][1].startswith("broken.pdf: this PDF cannot be read (")
    assert stored == ["manual.pdf"]


def test_cancel_while_a_file_is_embedded_stores_nothing(page, site, tmp_path):
    """Cancel on a file whose passages are being embedded (each batch slowed by the double) stops it:
    the sheet says nothing was stored, and the store is empty."""
    w = open_chat(page, site)
    slow = tmp_path / "slow.md"
    slow.write_text("\n\n".join(f"Paragraph {i} [[delay=150]] " + "words " * 100 for i in range(40)))
    open_sheet(page, "files")
    page.set_input_files("#files-input", [str(slow)])
    job = page.locator("#files-jobs li[data-stage=embedding]")
    job.wait_for(timeout=60_000)
    assert job.locator("progress").get_attribute("max") not in (None, "1")
    job.get_by_role("button", name="Cancel adding slow.md").click()
    page.wait_for_selector("#files-said:has-text('Cancelled')")
    assert page.inner_text("#files-said") == "Cancelled slow.md: nothing of it was stored."
    assert page.locator("#files-jobs li").count() == 0
    assert page.inner_text("#files-list") == "No files yet."
    stored = page.evaluate("""() => new Promise((resolve) => {
      const open = indexedDB.open('webllm-py');
      open.onsuccess = () => { const r = open.result.transaction('knowledge').objectStore('knowledge').count();
        r.onsuccess = () => { open.result.close(); resolve(r.result); }; };
    })""")
    assert stored == 0
    w.assert_clean()
