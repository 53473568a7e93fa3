import re
from pathlib import Path

import pytest

from app import ffi
from app.errors import BrowserOnly
from app.ffi import dom, engine, http, page, prompt_api, storage
from tests.unit.conftest import run

ROOT = Path(__file__).resolve().parents[2]


def test_module_imports_under_cpython_and_reports_versions():
    assert ffi.IN_BROWSER is False
    assert ffi.versions()["python"].count(".") == 2


@pytest.mark.parametrize("call", [
    lambda: ffi.to_js({"a": 1}),
    lambda: ffi.set_text("status", "x"),
    lambda: ffi.is_online(),
    lambda: run(ffi.probe_webgpu()),
    lambda: run(storage.kv_get("settings", "k")),
    lambda: run(engine.call_method(None, "reload")),
    lambda: http.HttpStream("http://127.0.0.1:1/"),
    lambda: prompt_api.prompt_api_present(),
    lambda: dom.listen("document", "click", lambda facts: None),
    lambda: page.page_query(),
    lambda: page.register_service_worker("sw.js"),
    lambda: page.apply_update(),
    lambda: run(storage.watch_storage(lambda kind, message: None)),
    lambda: run(ffi.import_module("static/render.js")),
])
def test_browser_only_calls_explain_themselves(call):
    with pytest.raises(BrowserOnly, match="needs the browser"):
        call()


def test_the_package_still_offers_every_public_name_of_its_modules():
    for module in (dom, engine, http, page, prompt_api, storage):
        for name in module.__all__:
            assert getattr(ffi, name) is getattr(module, name), f"app.ffi.{name}"


def test_no_javascript_is_built_from_strings():
    # The page's Content-Security-Policy forbids eval; this keeps the app's own code from needing it.
    # In Python, a JS eval is an attribute (js.eval, window.eval); Python's own eval of the user's
    # Python in the Python panel (app/playground.py) is not JavaScript.
    js_pattern = re.compile(r"Function\.new|new Function|\beval\(|Function\(")
    py_pattern = re.compile(r"Function\.new|new Function|\.eval\(|Function\(")
    files = [(p, py_pattern) for p in (ROOT / "app").rglob("*.py")]
    files += [(p, js_pattern) for p in (ROOT / "static").rglob("*.js") if "vendor" not in p.parts]
    found = [f"{p.relative_to(ROOT)}:{n}" for p, pattern in files
             for n, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert found == []


def test_the_page_declares_a_strict_policy_and_loads_the_bridge_before_pyscript():
    html = (ROOT / "index.html").read_text()
    policy = re.search(r'<meta http-equiv="Content-Security-Policy" content="([^"]+)">', html).group(1)
    directives = dict((d.split()[0], d.split()[1:]) for d in policy.split(";") if d.strip())
    assert "'unsafe-eval'" not in policy and "'unsafe-inline'" not in policy
    assert directives["script-src"] == ["'self'", "'wasm-unsafe-eval'"]
    assert directives["object-src"] == ["'none'"] and directives["base-uri"] == ["'none'"]
    assert html.index("static/bridge/boot.js") < html.index("static/vendor/pyscript/core.js")
    assert "<script>" not in html  # no inline JavaScript (the type="py" block is Python, read by PyScript)
