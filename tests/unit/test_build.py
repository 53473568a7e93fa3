"""build.py: the lock file it ships, the server it runs, and its errors."""

import hashlib
import json
import threading
import urllib.error
import urllib.request

import pytest

import build


def _wheel(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(name.encode())
    return path


def test_adjust_lock_describes_exactly_the_shipped_wheels(tmp_path):
    lock = {"info": {"python": "3.14.2"}, "packages": {
        "micropip": {"name": "micropip", "version": "0.11.1", "file_name": "old.whl", "sha256": "0",
                     "imports": ["micropip"], "depends": []},
        "pydantic": {"name": "pydantic", "version": "2.12.5", "file_name": "p.whl", "sha256": "0",
                     "imports": ["pydantic"], "depends": ["pydantic_core", "numpy"]},
        "numpy": {"name": "numpy", "version": "2", "file_name": "n.whl", "sha256": "0",
                  "imports": ["numpy"], "depends": []},
    }}
    wheels = [_wheel(tmp_path, "micropip-0.11.1-py3-none-any.whl"),
              _wheel(tmp_path, "pydantic-2.14.4-py3-none-any.whl"),
              _wheel(tmp_path, "pydantic_core-2.50.5-cp314-cp314-pyemscripten_2026_0_wasm32.whl")]
    out = build.adjust_lock(lock, wheels)
    assert out["info"] == lock["info"]
    assert set(out["packages"]) == {"micropip", "pydantic", "pydantic-core"}
    p = out["packages"]["pydantic"]
    assert p["version"] == "2.14.4" and p["file_name"] == wheels[1].name
    assert p["sha256"] == hashlib.sha256(wheels[1].read_bytes()).hexdigest()
    assert p["depends"] == ["pydantic_core"]  # numpy is not shipped: no dangling dependency
    assert lock["packages"]["pydantic"]["version"] == "2.12.5"  # input left alone


@pytest.fixture
def served(tmp_path):
    (tmp_path / "index.html").write_text("hi")
    (tmp_path / "m.mjs").write_text("export{}")
    log = []
    server = build.make_server(tmp_path, 0, "/repo/", log)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", log
    server.shutdown()
    server.server_close()


def test_server_serves_under_prefix_only(served):
    base, log = served
    with urllib.request.urlopen(base + "/repo/") as r:
        assert r.read() == b"hi"
    with urllib.request.urlopen(base + "/repo/m.mjs") as r:
        assert r.headers["Content-Type"] == "text/javascript"
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(base + "/index.html")
    assert info.value.code == 404
    info.value.close()
    assert log == ["/repo/", "/repo/m.mjs", "/index.html"]


def test_bad_prefix_is_refused(tmp_path):
    with pytest.raises(build.BuildError, match="prefix"):
        build.make_server(tmp_path, 0, "repo")


def test_missing_npm_is_a_clear_error(monkeypatch, capsys):
    monkeypatch.setattr(build.shutil, "which", lambda tool: None)
    assert build.main(["--force"]) == 2
    err = capsys.readouterr().err
    assert "`node` was not found on PATH" in err and "Install Node.js" in err


def test_versions_are_recorded(tmp_path):
    dist = build.build()
    versions = json.loads((dist / "static/vendor/VERSIONS.json").read_text())
    pkg = json.loads((build.ROOT / "package.json").read_text())["dependencies"]
    assert versions["@mlc-ai/web-llm"] == pkg["@mlc-ai/web-llm"]
    assert versions["pyodide"] == pkg["pyodide"]
    assert versions["wheels"]["pydantic"] == build.WHEELS["pydantic"]


def test_another_release_builds_beside_dist_without_touching_it():
    dist = build.build()
    other = build.build("0.2.79", out=build.CACHE / "dist-web-llm-0.2.79")  # the browser tests' copy
    assert json.loads((other / "static/vendor/VERSIONS.json").read_text())["@mlc-ai/web-llm"] == "0.2.79"
    pinned = json.loads((build.ROOT / "package.json").read_text())["dependencies"]["@mlc-ai/web-llm"]
    assert json.loads((dist / "static/vendor/VERSIONS.json").read_text())["@mlc-ai/web-llm"] == pinned
    assert build.build("0.2.79", out=other) == other and (other / ".stamp").exists()  # fresh: not rebuilt


def test_out_is_for_building_only(capsys):
    with pytest.raises(SystemExit):
        build.main(["--out", "elsewhere", "serve"])
    assert "--out is for building only" in capsys.readouterr().err


def _executable(path):
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return str(path)


def test_the_browser_is_chromium_env_then_the_system_then_playwrights(tmp_path, monkeypatch):
    system = tmp_path / "bin"
    system.mkdir()
    mine = _executable(tmp_path / "my-chrome")
    monkeypatch.setattr(build, "APP_BROWSERS", ())
    monkeypatch.setattr(build, "_playwright_chromium", lambda: None)
    monkeypatch.setenv("PATH", str(system))
    monkeypatch.setenv("CHROMIUM", mine)
    assert build.find_browser() == mine
    monkeypatch.setenv("CHROMIUM", str(tmp_path / "gone"))
    with pytest.raises(build.BuildError, match="does not exist"):
        build.find_browser()
    monkeypatch.delenv("CHROMIUM")
    with pytest.raises(build.BuildError) as info:  # none anywhere: both ways to get one are said
        build.find_browser()
    assert "apt-get install -y chromium" in str(info.value)
    assert "python -m playwright install chromium" in str(info.value)
    monkeypatch.setattr(build, "_playwright_chromium", lambda: mine)
    assert build.find_browser() == mine
    chrome = _executable(system / "google-chrome")
    assert build.find_browser() == chrome  # a system browser comes before Playwright's


def test_katex_is_vendored_with_every_font_its_stylesheet_asks_for_first():
    import re

    dist = build.build()
    versions = json.loads((dist / "static/vendor/VERSIONS.json").read_text())
    pkg = json.loads((build.ROOT / "package.json").read_text())["dependencies"]
    assert versions["katex"] == pkg["katex"]
    katex = dist / "static/vendor/katex"
    assert (katex / "katex.mjs").is_file() and (katex / "LICENSE").is_file()
    css = (katex / "katex.min.css").read_text()
    # Each @font-face names woff2 first; the browser fetches that one only.
    firsts = re.findall(r"src:url\((fonts/[^)]+)\)", css)
    assert firsts and all(f.endswith(".woff2") for f in firsts)
    assert all((katex / f).is_file() for f in firsts)
    assert sorted(p.name for p in (katex / "fonts").iterdir()) == sorted({f.split("/")[1] for f in firsts})


def test_the_performance_table_is_made_from_the_figures_of_one_run():
    figures = {
        "stream_overhead": {"ratio python": 0.995, "ratio python batches": 1.01, "added first chunk ms": 0.4,
                            "python chunks/s": 995, "js chunks/s": 1000, "python batches chunks/s": 1010,
                            "ratio python x2": 0.9, "python x2 chunks/s": 900, "js x2 chunks/s": 1000,
                            "chunks": 2000, "runs": 7, "machine": "a CPU, 2 cores", "versions": "Chromium 1"},
        "startup": {"ratio cold": 1.0, "ours cold ms": 900, "stock cold ms": 900, "ratio warm": 0.9,
                    "ours warm ms": 450, "stock warm ms": 500, "ours cold chat ms": 1300,
                    "ours warm chat ms": 800, "runs": 7},
        "download": {"ratio": 1.3, "ours_ms": 1300, "webllm_ms": 1000, "ratio_no_md5": 0.8, "ours_no_md5_ms": 800,
                     "mb": 252, "runs": 5},
    }
    table = build.performance_table(figures)
    assert table.startswith(build.TABLE_START) and table.endswith(build.TABLE_END)
    assert "| first chunk: time added by the Python client | <= +1 ms | +0.40 ms |" in table
    assert "0.90 (900 vs 1000 chunks/s)" in table
    assert "| <= 1.0 | 1.30 (1300 vs 1000 ms) |" in table and "| <= 1.0 | 0.80 (800 vs 1000 ms) |" in table
    assert "| the chat takes a message, cold / warm | (reported) | 1300 / 800 ms |" in table.replace("ours: navigation -> ", "")
    assert "Machine: a CPU, 2 cores. Versions: Chromium 1." in table
    readme = build.README.read_text()
    assert readme.count(build.TABLE_START) == 1 and readme.count(build.TABLE_END) == 1


def test_the_built_page_carries_pyscript_toml_inline_and_fetches_no_config():
    """What pyscript.toml says is what the built page's <script type="py"> is configured with (so
    PyScript needs neither the file nor its TOML parser before it starts), the unused plugins off."""
    import html
    import re
    import tomllib

    page = (build.build() / "index.html").read_text()
    attr = re.search(r'<script type="py" config="([^"]*)">', page).group(1)
    config = json.loads(html.unescape(attr))
    assert config == tomllib.loads((build.ROOT / "pyscript.toml").read_text())
    assert config["files"] == {"./app.zip": "./*"} and "!py-terminal" in config["plugins"]
    assert "pyscript.toml" not in page
    # MicroPython's side of PyScript gets the same plugin exclusions (else it loads them all).
    mpy = re.search(r"<mpy-config hidden>([^<]*)</mpy-config>", page).group(1)
    assert json.loads(html.unescape(mpy)) == {"plugins": config["plugins"]}


def test_a_page_that_no_longer_names_its_config_file_is_a_build_error(tmp_path):
    toml = tmp_path / "pyscript.toml"
    toml.write_text('name = "x"\n')
    with pytest.raises(build.BuildError, match="configuration"):
        build.inline_config('<script type="py" config="./other.toml"></script>', toml)


def test_the_python_snapshot_holds_the_standard_library_modules_the_app_imports():
    """What build.py asks the snapshot maker to import: the app's standard-library imports (so the
    page does not import them in every visit), never the page-only or third-party modules, which
    the snapshot cannot hold (js, pyodide) or which load lazily from wheels (pydantic)."""
    names = build.app_stdlib_imports()
    assert {"asyncio", "dataclasses", "json", "html.parser", "urllib.parse", "difflib"} <= set(names)
    assert not {"js", "pyodide", "pyodide.ffi", "pyodide_js", "pydantic", "__future__"} & set(names)
    assert not any(n.startswith("app") for n in names)
    assert names == sorted(set(names))


def test_the_built_site_ships_the_snapshot_and_the_apps_bytecode_but_not_their_makers():
    import zipfile

    dist_built = build.build()
    with zipfile.ZipFile(dist_built / "app.zip") as zf:
        names = set(zf.namelist())
    sources = {n for n in names if n.endswith(".py")}
    assert sources == {p.relative_to(build.ROOT).as_posix() for p in (build.ROOT / "app").rglob("*.py")}
    python = json.loads((dist_built / "static/vendor/VERSIONS.json").read_text())["python"]  # "3.14.2"
    tag = "cpython-" + "".join(python.split(".")[:2])
    for source in sources:  # app/ui/page.py -> app/ui/__pycache__/page.cpython-314.pyc
        folder, _, module = source.rpartition("/")
        assert f"{folder}/__pycache__/{module[:-3]}.{tag}.pyc" in names, source
    pyodide = dist_built / "static/vendor/pyodide"
    snapshot = (pyodide / "python-snapshot.gz").read_bytes()
    assert snapshot[:2] == b"\x1f\x8b"
    import gzip

    memory = gzip.decompress(snapshot)
    assert memory[:4] == b"\x00snp"  # Pyodide's snapshot magic
    assert not any((dist_built / "static" / name).exists() for name in build.BUILD_ONLY)
