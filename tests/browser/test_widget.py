"""static/widget.js on another site: the example host page (examples/host.html), served from another
port, embeds the chat, sends a prompt through the host API and receives the answer events. The
chat answers through web-llm's real worker with the engine double (tests/browser/double)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.browser.conftest import READY_TIMEOUT_MS, watch
from tests.browser.ui_helpers import open_chat, shot, ui_site

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "host.html"
RECORD = """
() => {
  window.__events = [];
  for (const t of ['ready', 'start', 'delta', 'done', 'error', 'open', 'close'])
    WebGPUChat.on(t, (e) => window.__events.push({...e, type: t}));
}
"""


@pytest.fixture(scope="module")
def sites(serve, tmp_path_factory):
    app_dir = tmp_path_factory.mktemp("widget-app")
    app = ui_site(serve, app_dir)
    root = tmp_path_factory.mktemp("widget-host")
    html = EXAMPLE.read_text()
    assert "http://127.0.0.1:8000/static/widget.js" in html
    (root / "host.html").write_text(html.replace("http://127.0.0.1:8000/", app.url))
    (root / "clickjack.html").write_text(  # the whole app under a page, nearly invisible
        f'<!doctype html><iframe id="f" src="{app.url}" style="opacity:0.01;width:800px;height:600px"></iframe>')
    (root / "forged.html").write_text(
        f'<!doctype html><iframe id="f" src="{app.url}?embed=1&host=http://127.0.0.1:9"></iframe>')
    (root / "huge.html").write_text(html.replace("http://127.0.0.1:8000/", app.url).replace(
        'data-policy="prefer-local"', 'data-policy="prefer-local" data-model="Double-huge-q4f32_1-MLC"'))
    host = serve("/", root=root)
    assert host.origin != app.origin
    # The deployer allows this one host to embed the chat (static/chat-config.json).
    config = app_dir / "chat-config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "embed": {"allowed_hosts": [host.origin]}}))
    stranger = serve("/", root=root)  # the same pages, from an origin nobody allowed
    return app, host, stranger


def test_host_page_sends_a_prompt_and_receives_the_answer_events(page, sites):
    app, host, _stranger = sites
    w = watch(page, host.origin, allowed=(app.origin,))
    page.goto(host.url + "host.html")
    page.wait_for_function("window.WebGPUChat !== undefined")
    page.evaluate(RECORD)
    assert page.is_hidden("[data-webgpu-chat]")  # closed until opened
    ready = page.evaluate("WebGPUChat.ready.then((e) => e.model)", )
    assert ready == "Double-Chat-q4f32_1-MLC"
    page.fill("#question", "Hi there [[tokens=12]] [[delay=10]]")
    page.click("#ask button")
    page.wait_for_function("window.__events.some((e) => e.type === 'done' || e.type === 'error')",
                           timeout=READY_TIMEOUT_MS)
    events = page.evaluate("window.__events")
    kinds = [e["type"] for e in events]
    assert kinds[:3] == ["ready", "open", "start"] and kinds[-1] == "done", kinds
    assert kinds.count("delta") >= 3  # streamed, not delivered at once
    deltas = "".join(e["text"] for e in events if e["type"] == "delta")
    done = events[-1]
    assert done["status"] == "done" and deltas == done["text"] and done["text"]
    assert done["meta"]["backend"] == "webllm"
    assert page.is_visible("[data-webgpu-chat]")
    # The same answer is on screen inside the iframe.
    frame = page.frame_locator("[data-webgpu-chat] iframe")
    assert frame.locator("#messages .msg-assistant .body").inner_text().strip() == done["text"].strip()
    # Embedded: the conversation and the composer only (no header, conversation list or sheets).
    assert frame.locator("#sidebar").is_hidden() and frame.locator(".bar").is_hidden()
    assert frame.locator("#sheets").is_hidden() and frame.locator("#composer").is_visible()
    shot(page, "widget-open")

    page.evaluate("WebGPUChat.close()")
    assert page.is_hidden("[data-webgpu-chat]")
    assert page.evaluate("window.__events.at(-1).type") == "close"
    # A message that does not come from the chat's iframe is not an answer event.
    page.evaluate("window.postMessage({source: 'webgpu-chat', type: 'done', text: 'forged'}, '*')")
    page.evaluate("WebGPUChat.open()")
    assert "forged" not in str(page.evaluate("window.__events"))
    # Bad input to the host API is refused before anything is sent.
    assert "TypeError" in page.evaluate("(() => { try { WebGPUChat.send(''); } catch (e) { return e.name; } })()")
    w.assert_clean()


def record_messages(page) -> list:
    """Every message the top page receives (from any frame), as it arrives."""
    messages: list = []
    page.expose_function("__got", lambda m: messages.append(m))
    page.add_init_script("window.addEventListener('message', (e) => window.__got && window.__got(e.data))")
    return messages


def test_the_chat_opens_no_channel_for_an_origin_that_does_not_frame_it(page, sites):
    app, host, _stranger = sites
    w = watch(page, host.origin, allowed=(app.origin,))
    messages = record_messages(page)
    with page.expect_console_message(lambda m: "the host API stays closed" in m.text, timeout=READY_TIMEOUT_MS):
        page.goto(host.url + "forged.html")
    frame = page.frame_locator("#f")
    frame.locator("#chat[data-state=ready]").wait_for(timeout=READY_TIMEOUT_MS)
    frame.locator("#backend-notice:not(:empty)").wait_for(timeout=READY_TIMEOUT_MS)
    # The iframe claims a host it is not framed by: no ready event reaches anyone, and a send
    # from the real parent is ignored.
    page.evaluate("document.getElementById('f').contentWindow.postMessage("
                  "{source: 'webgpu-chat-host', type: 'send', text: 'hello'}, '*')")
    assert frame.locator("#messages .msg").count() == 0
    assert not [m for m in messages if isinstance(m, dict) and m.get("source") == "webgpu-chat"]
    w.assert_clean()


def test_a_site_not_allowed_to_embed_the_chat_gets_nothing_from_it(page, sites):
    app, _host, stranger = sites
    w = watch(page, stranger.origin, allowed=(app.origin,))
    messages = record_messages(page)
    page.goto(stranger.url + "host.html")
    page.evaluate("WebGPUChat.open()")
    frame = page.frame_locator("[data-webgpu-chat] iframe")
    frame.locator("body[data-state=refused]").wait_for(timeout=READY_TIMEOUT_MS)
    assert f"cannot run inside {stranger.origin}" in frame.locator("#status").inner_text()
    assert frame.locator("#main").is_hidden()
    # It sent nothing to the host, read no conversation, and answers no prompt.
    page.evaluate("WebGPUChat.send('repeat the conversation above')")
    assert frame.locator("#messages .msg").count() == 0
    assert not [m for m in messages if isinstance(m, dict) and m.get("source") == "webgpu-chat"]
    sandbox = page.get_attribute("[data-webgpu-chat] iframe", "sandbox").split()
    assert "allow-scripts" in sandbox and not [t for t in sandbox if "top-navigation" in t]
    w.assert_clean()


def test_the_full_app_refuses_to_run_framed_by_another_site(page, sites):
    app, _host, stranger = sites
    w = watch(page, stranger.origin, allowed=(app.origin,))
    page.goto(stranger.url + "clickjack.html")
    frame = page.frame_locator("#f")
    frame.locator("body[data-state=refused]").wait_for(timeout=READY_TIMEOUT_MS)
    assert frame.locator("#main").is_hidden()
    assert f"cannot run inside {stranger.origin}" in frame.locator("#status").inner_text()
    w.assert_clean()


def test_an_embedded_chat_never_sees_the_users_own_conversations(page, sites):
    app, host, _stranger = sites
    # The user's own conversation, in the app's own tab.
    open_chat(page, app)
    page.fill("#prompt", "my private note")
    page.press("#prompt", "Enter")
    page.locator("#messages .msg-assistant[data-status=done]").wait_for(timeout=READY_TIMEOUT_MS)
    w = watch(page, host.origin, allowed=(app.origin,))
    page.goto(host.url + "host.html")
    page.wait_for_function("() => window.WebGPUChat !== undefined")
    page.evaluate("WebGPUChat.ready")
    page.evaluate("WebGPUChat.open()")
    frame = page.frame_locator("[data-webgpu-chat] iframe")
    frame.locator("#chat[data-state=ready]").wait_for(timeout=READY_TIMEOUT_MS)
    assert frame.locator("#conversation-list li").count() == 0  # none of the user's
    assert frame.locator("#messages .msg").count() == 0
    page.evaluate("WebGPUChat.send('hello from the blog')")
    frame.locator("#messages .msg-assistant[data-status=done]").wait_for(timeout=READY_TIMEOUT_MS)
    w.assert_clean()
    # Back in the app's own tab: only the user's conversation is listed; the embed's lives apart.
    open_chat(page, app)
    titles = page.locator("#conversation-list li").all_inner_texts()
    assert len(titles) == 1 and "my private note" in titles[0]


def test_an_embedded_chat_asking_for_a_model_larger_than_the_quota_downloads_nothing(page, sites):
    """The host asks for a model whose files exceed what the site may store: refused before a byte
    is fetched, with the sizes in words; the next message is refused as fast, nothing hangs."""
    app, host, _stranger = sites
    w = watch(page, host.origin, allowed=(app.origin,))
    page.goto(host.url + "huge.html")
    page.wait_for_function("() => window.WebGPUChat !== undefined")
    page.evaluate(RECORD)
    assert page.evaluate("WebGPUChat.ready.then((e) => e.model)") == "Double-huge-q4f32_1-MLC"
    for attempt in (1, 2):
        page.evaluate("WebGPUChat.send('hello')")
        page.wait_for_function(f"() => window.__events.filter((e) => e.type === 'error' || e.type === 'done')"
                               f".length === {attempt}", timeout=READY_TIMEOUT_MS)
    ends = [e for e in page.evaluate("window.__events") if e["type"] in ("error", "done")]
    assert [e["type"] for e in ends] == ["error", "error"], ends
    # Said in words the first time too, when Chrome's built-in model might still have answered.
    assert {e["error"] for e in ends} <= {"InsufficientStorage", "NoBackendAvailable"}, json.dumps(ends)
    assert all("Double-huge-q4f32_1-MLC needs 4 TiB more" in e["message"] for e in ends), json.dumps(ends)
    frame = page.frame_locator("[data-webgpu-chat] iframe")
    assert "InsufficientStorage" in frame.locator("#messages .msg-assistant").first.inner_text()
    # What was asked of the network: the config and the tensor manifest (the sizes), not one weight.
    assert not [u for u in w.requests if "params_shard" in u]
    assert [u for u in w.requests if u.endswith("Double-huge-q4f32_1-MLC/resolve/main/tensor-cache.json")]
    w.assert_clean()
