"""The page boots Python from its own files and reports this device's WebGPU."""

import json

import pytest

from tests.browser.conftest import QUIET_FLAGS, open_app
from tests.browser.ui_helpers import open_sheet


def _expected_versions(dist):
    return json.loads((dist / "static/vendor/VERSIONS.json").read_text())


def test_loading_state_is_shown_before_python(page, site):
    # Hold back the interpreter so the page stays in its first state long enough to look at it.
    page.route("**/pyodide.asm.wasm", lambda route: None)
    page.goto(site.url, wait_until="domcontentloaded")
    assert page.get_attribute("body", "data-state") == "loading"
    assert "Loading Python" in page.inner_text("#status")


def test_ready_with_python_version_and_only_local_requests(page, site, dist):
    site.log.clear()
    w = open_app(page, site)
    versions = _expected_versions(dist)
    shown = page.inner_text("#python-version")
    assert f"Python {versions['python']}" in shown
    assert f"Pyodide {versions['pyodide']}" in shown
    assert page.inner_text("#status") == "Ready"
    page.wait_for_selector("#webgpu-summary:not([data-webgpu=pending])", state="attached")  # Device sheet
    w.assert_clean()
    # The server saw the runtime being fetched from itself, nothing from a CDN.
    assert any(p.endswith("/pyodide.asm.wasm") for p in site.log)
    assert any(p.endswith("/app.zip") for p in site.log)
    # web-llm (6 MB) is not loaded until a model is: start-up stays as cheap as Python itself.
    assert not any("web-llm" in p for p in site.log)
    # Nor are PyScript's plugins the page turns off (editor, terminal, game, donkey), for either
    # interpreter type: fetching and running them was start-up time spent on nothing.
    unused = ("py-editor", "py-terminal", "py-game", "donkey", "deprecations-manager")
    assert [p for p in site.log if any(f"/pyscript/{name}-" in p for name in unused)] == []


def test_webgpu_adapter_and_limits_are_reported(page, site):
    w = open_app(page, site)
    open_sheet(page, "device")
    summary = page.locator("#webgpu-summary[data-webgpu=available]")
    summary.wait_for()
    assert "swiftshader" in summary.inner_text().lower()
    table = page.locator("#webgpu-limits")
    assert table.is_visible()
    text = table.inner_text()
    for name in ("maxBufferSize", "maxStorageBufferBindingSize", "maxComputeWorkgroupStorageSize",
                 "maxStorageBuffersPerShaderStage"):
        assert name in text
    # SwiftShader: 1 GiB buffers, subgroups, no shader-f16.
    assert "1 GiB" in text
    assert "shader-f16\tno" in text
    assert "subgroups\tyes" in text
    assert page.locator("#webgpu-help").is_hidden()
    w.assert_clean()


def test_without_webgpu_the_page_explains_and_stays_usable(launch_chromium, site):
    browser = launch_chromium(QUIET_FLAGS)  # no --enable-unsafe-webgpu: requestAdapter() -> null
    page = browser.new_page()
    w = open_app(page, site)
    open_sheet(page, "device")
    page.locator("#webgpu-summary[data-webgpu=missing]").wait_for()
    help_text = page.inner_text("#webgpu-help")
    assert "no GPU adapter" in page.inner_text("#webgpu-summary")
    assert "--enable-unsafe-webgpu" in help_text and "chrome://gpu" in help_text
    assert page.locator("#webgpu-limits").is_hidden()
    # Python keeps running: the page still answers after the failed probe.
    assert page.get_attribute("body", "data-state") == "ready"
    assert w.foreign == []


@pytest.mark.parametrize("prefix", ["/repo-name/", "/a/b/"])
def test_works_under_a_sub_path(page, serve, prefix):
    sub = serve(prefix)
    w = open_app(page, sub)
    page.locator("#webgpu-summary[data-webgpu=available]").wait_for(state="attached")
    w.assert_clean()
    assert sub.log and all(p.startswith(prefix) for p in sub.log), sub.log


def test_web_llm_worker_module_loads(page, site):
    """The worker the engine will live in starts from the vendored web-llm (nothing else loaded)."""
    w = open_app(page, site)
    result = page.evaluate(
        """() => new Promise((resolve) => {
            const worker = new Worker(new URL('static/webllm-worker.js', document.baseURI), {type: 'module'});
            worker.onerror = (e) => resolve('error: ' + e.message);
            // With no model loaded, web-llm's handler answers a stats request with its "throw" reply.
            worker.onmessage = (m) => { worker.terminate(); resolve(m.data); };
            worker.postMessage({kind: 'runtimeStatsText', uuid: 'probe', content: {}});
        })"""
    )
    assert result["kind"] == "throw" and result["uuid"] == "probe", result
    assert "not loaded" in result["content"].lower() or "model" in result["content"].lower(), result
    assert any("/static/vendor/web-llm/index.js" in u for u in w.requests)
    w.assert_clean()
