"""The Python panel as a visitor uses it, in real Chromium: code runs with the chat's own client over
web-llm's real worker path (the engine double as the model), output streams in, Stop frees the
engine, every example runs, scripts are kept, exported and imported, a shared link never runs by
itself, and micropip installs a wheel served on 127.0.0.1."""

from __future__ import annotations

import io
import zipfile

import pytest

from app.playground_examples import EXAMPLES
from app.ui.playground import encode_link
from tests.browser.conftest import READY_TIMEOUT_MS, PagePython, watch
from tests.browser.model_server import ModelServer
from tests.browser.ui_helpers import confirm, open_chat, open_sheet, ui_site

RUN_MS = 90_000


@pytest.fixture(scope="module")
def py_site(serve, tmp_path_factory):
    return ui_site(serve, tmp_path_factory.mktemp("python-panel"))


def open_panel(page):
    open_sheet(page, "python")
    page.wait_for_selector("#python[data-state=ready]", timeout=READY_TIMEOUT_MS)


def run_code(page, code: str) -> str:
    """Put ``code`` in the editor, press Ctrl+Enter, wait for the run to end; the output text."""
    page.fill("#py-editor", code)
    before = page.locator("#py-output .py-end").count()
    page.press("#py-editor", "Control+Enter")
    page.wait_for_function(f"() => document.querySelectorAll('#py-output .py-end').length > {before}",
                           timeout=RUN_MS)
    return page.inner_text("#py-output")


def test_code_runs_with_top_level_await_streams_output_and_shows_values_and_tracebacks(page, py_site):
    w = open_chat(page, py_site)
    open_panel(page)
    out = run_code(page, "import asyncio\nfor i in range(3):\n    print('line', i)\n    await asyncio.sleep(0)\n"
                         "{'answer': 6 * 7}")
    assert "line 0\nline 1\nline 2" in out and "{'answer': 42}" in out
    out = run_code(page, "def f(x):\n    return 1 / x\nf(0)")
    errors = page.locator("#py-output .py-error").all_inner_texts()
    assert "ZeroDivisionError" in errors[-1] and "line 2" in errors[-1] and "playground.py" not in errors[-1]
    # The client is the chat's own: an answer streams into the output as it comes.
    page.fill("#py-editor", "stream = await client.chat.completions.create(messages=[{'role': 'user', "
                            "'content': 'go [[tokens=60]] [[delay=30]]'}], stream=True)\n"
                            "async with stream:\n    async for chunk in stream:\n"
                            "        if chunk.choices:\n            print(chunk.choices[0].delta.content or '', end='')")
    page.press("#py-editor", "Control+Enter")
    page.wait_for_function("() => /t5 /.test(document.getElementById('py-output').innerText)", timeout=RUN_MS)
    assert page.is_visible("#py-stop") and not page.is_visible("#py-run")
    page.wait_for_function("() => /t59/.test(document.getElementById('py-output').innerText)", timeout=RUN_MS)
    w.assert_clean()


def test_stop_ends_a_run_mid_answer_and_the_chat_answers_at_once(page, py_site):
    w = open_chat(page, py_site)
    open_panel(page)
    page.fill("#py-editor", "stream = await client.chat.completions.create(messages=[{'role': 'user', "
                            "'content': 'long [[tokens=2000]] [[delay=20]]'}], stream=True)\n"
                            "async for chunk in stream:  # no `async with`: Stop must still free the engine\n"
                            "    if chunk.choices:\n        print(chunk.choices[0].delta.content or '', end='')")
    page.click("#py-run")
    page.wait_for_function("() => /t20 /.test(document.getElementById('py-output').innerText)", timeout=RUN_MS)
    page.click("#py-stop")
    page.wait_for_function("() => document.getElementById('py-output').innerText.includes('Stopped.')",
                           timeout=READY_TIMEOUT_MS)
    page.wait_for_function("() => document.querySelector('#py-output .py-end')?.innerText.startsWith('■ stopped')")
    assert page.is_visible("#py-run")
    assert "t1999" not in page.inner_text("#py-output")
    # The engine is free: the chat's next answer comes (it would wait behind a held stream).
    page.fill("#prompt", "after the panel [[tokens=3]]")
    page.press("#prompt", "Enter")
    page.locator("#messages .msg-assistant[data-status=done]").wait_for(timeout=READY_TIMEOUT_MS)
    w.assert_clean()


@pytest.mark.parametrize("title", list(EXAMPLES))
def test_each_example_runs_from_the_examples_list(page, py_site, title):
    w = open_chat(page, py_site)
    if "Compare" in title:  # needs two downloaded models: download two of the double's
        py = PagePython(page)
        py("from app import session\nm = await session.current.models()\n"
           "await m.download('Double-Chat-q4f32_1-MLC')\nawait m.download('Double-Tiny-Context-q4f32_1-MLC')",
           timeout_ms=RUN_MS)
    open_panel(page)
    page.select_option("#py-example", title)
    assert page.input_value("#py-editor") == EXAMPLES[title]
    page.click("#py-run")
    page.wait_for_selector("#py-output .py-end", timeout=RUN_MS)
    assert page.inner_text("#py-output .py-end").startswith("■ done in ")
    assert page.locator("#py-output .py-error").count() == 0, page.inner_text("#py-output")
    out = page.inner_text("#py-output")
    result = page.locator("#py-output .py-result").last.inner_text()
    expected = {
        "Stream an answer": lambda: "Echo: Write a haiku" in out and result.strip() == "'stop'",
        "Extract a pydantic object (parse)": lambda: "City {" in out and result.startswith("City("),
        "Call Python functions as tools (run_tools)": lambda: "called get_weather(" in out and "answer:" in out,
        "Classify 20 texts into a table": lambda: out.count(" | ") == 21 and "'positive': 20" in result,
        "Compare two downloaded models": lambda: "Double-Chat-q4f32_1-MLC\n  first token" in out
        and "Double-Tiny-Context-q4f32_1-MLC\n  first token" in out and "tokens/s" in out,
    }[title]
    assert expected(), out
    w.assert_clean()


def test_scripts_are_saved_exported_imported_and_kept_across_a_reload(page, py_site, tmp_path):
    w = open_chat(page, py_site)
    open_panel(page)
    page.fill("#py-editor", "print('kept')")
    page.fill("#py-name", "my script")
    page.click("#py-save")
    page.locator("#py-scripts li[data-id='my script']").wait_for()
    with page.expect_download() as download:
        page.click("#py-export")
    saved = tmp_path / "exported.py"
    download.value.save_as(saved)
    assert download.value.suggested_filename == "my script.py" and saved.read_text() == "print('kept')"
    # A bad name is refused in words; nothing is stored under it.
    page.fill("#py-name", "a/b")
    page.click("#py-save")
    page.wait_for_function("() => document.getElementById('py-said').innerText.startsWith('InvalidRequest')")
    page.reload()
    page.wait_for_selector("#chat[data-state=ready]", timeout=READY_TIMEOUT_MS)
    open_panel(page)
    assert page.eval_on_selector_all("#py-scripts li", "items => items.map(i => i.dataset.id)") == ["my script"]
    page.locator("#py-scripts li[data-id='my script'] [data-action=open]").click()
    page.wait_for_function("() => document.getElementById('py-editor').value === \"print('kept')\"")
    # Import a .py file: it opens in the editor, and does not run.
    source = tmp_path / "imported.py"
    source.write_text("print('from a file')\n")
    page.set_input_files("#py-import", str(source))
    page.wait_for_function("() => document.getElementById('py-editor').value === \"print('from a file')\\n\"")
    assert page.input_value("#py-name") == "imported" and page.inner_text("#py-output") == ""
    page.locator("#py-scripts li[data-id='my script'] [data-action=delete]").click()
    confirm(page)
    page.wait_for_function("() => !document.querySelector('#py-scripts li')")
    w.assert_clean()


def test_code_from_a_link_opens_in_the_editor_and_runs_only_when_asked(page, py_site):
    code = "import js\njs.document.title = 'ran'\nprint('ran')"
    w = watch(page, py_site.origin)
    page.goto(py_site.url + "#" + encode_link(code))  # a fresh visit through the shared link
    page.wait_for_selector("#python[data-state=ready]", timeout=READY_TIMEOUT_MS)
    assert page.input_value("#py-editor") == code
    assert "has not run" in page.inner_text("#py-warning") and page.is_visible("#py-warning")
    assert page.title() != "ran" and page.inner_text("#py-output") == ""  # not run
    assert "#py=" not in page.url  # taken out of the address bar once in the editor
    run_code(page, code)
    assert page.title() == "ran" and not page.is_visible("#py-warning")
    w.assert_clean()


def tiny_wheel() -> bytes:
    """A pure-Python wheel built here: one module with hello()."""
    name, version = "tinywheel", "1.0"
    dist = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": "def hello():\n    return 'hello from a local wheel'\n",
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    files[f"{dist}/RECORD"] = "".join(f"{path},,\n" for path in files) + f"{dist}/RECORD,,\n"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for path, text in files.items():
            zf.writestr(path, text)
    return buffer.getvalue()


def test_micropip_installs_a_pure_python_wheel_served_on_this_machine(page, py_site, request):
    # Served with CORS, as PyPI's file host serves wheels (the page fetches it from another origin).
    wheels = ModelServer()
    request.addfinalizer(wheels.close)
    wheels.files["/tinywheel-1.0-py3-none-any.whl"] = tiny_wheel()
    w = open_chat(page, py_site, allowed=(wheels.origin,))
    open_panel(page)
    out = run_code(page, f"import micropip\nawait micropip.install('{wheels.url('/tinywheel-1.0-py3-none-any.whl')}')\n"
                         "import tinywheel\ntinywheel.hello()")
    assert "'hello from a local wheel'" in out, out
    assert wheels.requests["/tinywheel-1.0-py3-none-any.whl"] >= 1
    w.assert_clean()


def test_the_embedded_chat_has_no_python_panel(page, py_site):
    w = open_chat(page, py_site)
    page.goto(py_site.url + "?embed=1")
    page.wait_for_selector("#chat[data-state=ready]", timeout=READY_TIMEOUT_MS)
    assert page.is_hidden("#python") and page.get_attribute("#python", "data-state") == "loading"
    w.assert_clean()
