"""Python starts from the memory snapshot build.py made (static/python-start.js), and starts the
ordinary way, with nothing lost, when that snapshot is missing, damaged or not for this Pyodide."""

import gzip

import pytest

from tests.browser.conftest import PagePython, open_app
from tests.browser.ui_helpers import open_sheet

SNAPSHOT = "static/vendor/pyodide/python-snapshot.gz"

# What a program in the page sees of its interpreter: a restored snapshot must look like a fresh start.
STATE = """
import locale, os, sys
{"environ": dict(os.environ), "path": sys.path, "argv": sys.argv, "cwd": os.getcwd(),
 "executable": sys.executable, "flags": list(sys.flags), "prefix": sys.prefix,
 "locale": [locale.setlocale(locale.LC_CTYPE), locale.getlocale(), locale.getencoding()],
 "encodings": [sys.getfilesystemencoding(), sys.stdout.encoding if sys.stdout else None]}
"""


def python_line(page) -> str:
    open_sheet(page, "device")
    return page.inner_text("#python-version")


def test_python_starts_from_the_builds_snapshot_and_draws_new_random_numbers_each_visit(page, serve, dist):
    site = serve("/")
    w = open_app(page, site)
    assert "started from its snapshot in" in python_line(page)
    # Preloaded and read once: the 6 MB file is not downloaded twice.
    assert site.log.count(f"/{SNAPSHOT}") == 1
    py = PagePython(page)
    first = py("import random\n[random.random(), random.getrandbits(64)]")
    state = py(STATE)
    w.assert_clean()

    page.reload()
    page.wait_for_selector("body[data-state=ready]")
    assert "started from its snapshot in" in python_line(page)
    second = PagePython(page)("import random\n[random.random(), random.getrandbits(64)]")
    # The snapshot holds the random module's state: without a reseed every visit draws the same.
    assert first != second
    # Nothing of the build machine (Node's program path, its environment) in the page's Python.
    assert state["environ"].get("_") == "./this.program"
    assert not any(str(dist.parent) in v for v in state["environ"].values())


def _another_build(real: bytes) -> bytes:
    memory = bytearray(gzip.decompress(real))
    memory[16:48] = bytes(32)  # the Pyodide build id the snapshot was made with
    return gzip.compress(bytes(memory), compresslevel=1)


FAULTS = {
    "missing": None,
    "cut off": lambda real: real[: len(real) // 2],
    "not a snapshot": lambda real: b"<html>Not here</html>" * 100,
    "made by another Pyodide build": _another_build,
}


@pytest.mark.parametrize("fault", FAULTS)
def test_without_a_usable_snapshot_python_starts_the_ordinary_way(page, serve, dist, tmp_path, fault):
    make = FAULTS[fault]
    replacement = tmp_path / "python-snapshot.gz"
    if make is not None:
        replacement.write_bytes(make((dist / SNAPSHOT).read_bytes()))
    warnings = []
    page.on("console", lambda m: m.type == "warning" and warnings.append(m.text))
    site = serve("/", overlay={SNAPSHOT: replacement})
    w = open_app(page, site)
    line = python_line(page)
    assert "started in" in line and "snapshot" not in line
    assert any("Python starts without its snapshot" in text for text in warnings)
    # The page works, and its Python is what the snapshot would have given.
    fresh = PagePython(page)(STATE)
    page.locator("#prompt").wait_for(state="visible")
    expected = ["404"] if fault == "missing" else []  # the browser logs the failed request itself
    assert [e for e in w.errors if not any(code in e for code in expected)] == []

    restored = page.context.new_page()
    open_app(restored, serve("/"))
    snapshot_state = PagePython(restored)(STATE)
    assert {k: v for k, v in snapshot_state.items() if v != fresh[k]} == {}, fresh


def test_the_apps_modules_come_with_bytecode_this_python_uses_as_it_is(page, site, dist):
    """build.py compiles the app with the page's own Python (static/python-build.mjs): each module's
    .pyc carries the hash of its source, so the page imports it without compiling (~0.1 s of the
    chat's mount). A .pyc for another Python or another source would be compiled again instead."""
    import zipfile

    open_app(page, site)
    page.wait_for_selector("#chat[data-state=ready]")
    shipped = {}
    with zipfile.ZipFile(dist / "app.zip") as zf:
        for name in zf.namelist():
            if name.endswith(".pyc"):
                shipped[name] = zf.read(name).hex()
    checked = PagePython(page)("""
import importlib.util, os, sys
out = {}
for name, module in sorted(sys.modules.items()):
    if not name.startswith("app") or not getattr(module, "__file__", None):
        continue
    pyc = importlib.util.cache_from_source(module.__file__)
    with open(module.__file__, "rb") as f:
        source_hash = importlib.util.source_hash(f.read())
    with open(pyc, "rb") as f:
        data = f.read()
    out[os.path.relpath(pyc)] = {"magic": data[:4] == importlib.util.MAGIC_NUMBER,
                                 "flags": int.from_bytes(data[4:8], "little"),
                                 "matches source": data[8:16] == source_hash, "bytes": data.hex()}
out
""")
    assert len(checked) > 20  # the chat's modules, at least
    for pyc, facts in checked.items():
        assert facts["magic"] and facts["matches source"], pyc
        assert facts["flags"] == 0b11, pyc  # hash-based, checked against the source
        assert shipped[pyc] == facts["bytes"], pyc  # the one build.py made, not one Python wrote
