"""After one visit the app starts offline: the app-shell service worker (static/sw.js, written to
dist/sw.js by the build). The config says "offline": "always" because the shipped setting (true)
leaves automated browsers alone, so the other tests see every request they count."""

from __future__ import annotations

import json

from tests.browser.conftest import READY_TIMEOUT_MS
from tests.browser.double import CHAT_MODEL, OVERLAY, app_config
from tests.browser.ui_helpers import open_chat


def test_the_app_reaches_ready_offline_after_one_visit(page, serve, tmp_path, dist):
    worker = (dist / "sw.js").read_text()
    assert "/*SHELL*/" not in worker and '"app.zip"' in worker  # the build filled in the shell's files
    assert not (dist / "static" / "sw.js").exists()
    config = tmp_path / "chat-config.json"
    site = serve("/", overlay={**OVERLAY, "static/chat-config.json": config})
    config.write_text(json.dumps({"model": CHAT_MODEL, "app_config": app_config(site.origin), "offline": "always"}))
    w = open_chat(page, site)
    # No clients.claim(): this first page stays uncontrolled; the next navigation is the worker's.
    page.evaluate("() => navigator.serviceWorker.ready.then(() => true)")
    names = [n for n in page.evaluate("caches.keys()") if n.startswith("py-chat-shell-")]
    assert len(names) == 1, names
    cached = page.evaluate(f"caches.open({names[0]!r}).then((c) => c.keys()).then((k) => k.map((r) => r.url))")
    for path in ("index.html", "app.zip", "pyscript.toml", "static/vendor/pyodide/pyodide.asm.wasm",
                 "static/vendor/web-llm/index.js", "static/widget.js"):
        assert site.url + path in cached, path
    # web-llm's caches are its own: one made now survives, and model files never enter the shell.
    page.evaluate("caches.open('webllm/model').then((c) => c.put('https://models.test/x.bin', new Response('x')))")

    page.context.set_offline(True)
    page.reload()
    page.wait_for_selector("body[data-state=ready]", timeout=READY_TIMEOUT_MS)
    page.wait_for_selector("#chat[data-state=ready]", timeout=READY_TIMEOUT_MS)
    assert page.inner_text("#status") == "Ready"
    assert "webllm/model" in page.evaluate("caches.keys()")
    page.context.set_offline(False)
    w.assert_clean()
