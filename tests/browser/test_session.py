"""The page's composition root in Chromium: every chat request goes through telemetry, logging, retry
and timeout (seen in the Activity view), and Chrome's built-in model answers where nothing else can."""

from __future__ import annotations

import http.server
import json
import threading

import pytest

from tests.browser.conftest import API_KEY, QUIET_FLAGS
from tests.browser.double import CHROME_AI
from tests.browser.ui_helpers import answers, open_chat, open_sheet, shot, ui_site


def site_with(serve, tmp_dir, **config):
    """The shipped page with ``config`` fields in its chat-config.json (no web-llm model unless given)."""
    site = ui_site(serve, tmp_dir, model=config.pop("model", None), cloud=config.pop("cloud", None))
    path = tmp_dir / "chat-config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **config}))
    return site


def send(page, text: str) -> None:
    page.fill("#prompt", text)
    page.press("#prompt", "Enter")


def enter_key(page) -> None:
    open_sheet(page, "settings")
    page.fill("#setting-api-key", API_KEY)
    page.fill("#setting-max-tokens", "8")
    page.get_by_role("button", name="Save", exact=True).click()
    page.locator("#settings-saved", has_text="Saved.").wait_for()


def activity(page) -> list[str]:
    return page.eval_on_selector_all("#activity-list li", "items => items.map((li) => li.dataset.event)")


def test_a_failed_first_attempt_is_retried_and_the_request_is_observed(page, serve, tmp_path_factory, llama):
    site = site_with(serve, tmp_path_factory.mktemp("retry"), builtin=False,
                     cloud={"base_url": llama.origin + "/v1", "model": "smollm2", "label": "llama.cpp"},
                     limits={"attempts": 2, "first_token_s": 60})
    attempts = []

    def first_fails(route):
        attempts.append(route.request.method)
        if len(attempts) == 1:  # the server is busy once: a real 503 the browser can read (CORS)
            route.fulfill(status=503, body='{"error": {"message": "busy, try again"}}',
                          headers={"content-type": "application/json", "access-control-allow-origin": "*"})
        else:
            route.continue_()

    page.route(llama.origin + "/v1/chat/completions", first_fails)
    w = open_chat(page, site, allowed=(llama.origin,))
    enter_key(page)
    before = llama.requests_seen()
    send(page, "Say hello.")
    done = page.locator("#messages .msg-assistant[data-status=done]")
    done.wait_for(timeout=120_000)
    assert done.locator(".body").inner_text().strip()
    assert "llama.cpp" in done.locator(".meta").inner_text()
    assert attempts == ["POST", "POST"] and llama.requests_seen() == before + 1  # one refused, one served
    open_sheet(page, "device")
    page.locator("#activity-list li[data-event='gen_ai.request.end']").wait_for()
    events = activity(page)
    # Newest first: the request started, was retried once after the 503, and ended.
    chat = [e for e in events if e.startswith(("gen_ai.", "app.request"))]
    assert chat[-1] == "gen_ai.request.start" and chat[0] == "gen_ai.request.end"
    assert "app.request.retry" in chat and chat.count("gen_ai.request.start") == 1
    retry = page.locator("#activity-list li[data-event='app.request.retry']").inner_text()
    assert "retry #1 of llama.cpp after ServerError" in retry
    assert API_KEY not in page.inner_text("#activity-list")
    shot(page, "activity")
    # The browser itself logs the injected 503; anything else logged is a failure.
    w.errors.remove("Failed to load resource: the server responded with a status of 503 (Service Unavailable)")
    w.assert_clean()


class HungEndpoint:
    """An OpenAI-compatible endpoint on 127.0.0.1 that accepts a chat request and never answers it
    (no status line, no headers) until the test ends; CORS preflights are answered."""

    def __init__(self):
        self.release = threading.Event()
        self.posts = 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_OPTIONS(self):  # noqa: N802
                self.send_response(204)
                self.send_header("Access-Control-Allow-Origin", "*")
                self.send_header("Access-Control-Allow-Methods", "GET, POST")
                self.send_header("Access-Control-Allow-Headers", "content-type, authorization")
                self.end_headers()

            def do_GET(self):  # noqa: N802 (the router's health probe: GET /models hangs too)
                outer.release.wait(120)

            def do_POST(self):  # noqa: N802
                outer.posts += 1
                outer.release.wait(120)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.origin = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hung():
    endpoint = HungEndpoint()
    yield endpoint
    endpoint.close()


def chat_with_hung_endpoint(page, serve, tmp_dir, hung, **limits):
    """The chat with ``hung`` as its only route (no web-llm model, no built-in model)."""
    site = site_with(serve, tmp_dir, builtin=False, limits=limits,
                     cloud={"base_url": hung.origin + "/v1", "model": "m", "label": "hung endpoint"})
    return open_chat(page, site, allowed=(hung.origin,))


def test_a_hung_endpoint_is_cut_by_the_timeout_and_the_chat_says_why(page, serve, tmp_path_factory, hung):
    w = chat_with_hung_endpoint(page, serve, tmp_path_factory.mktemp("hung"), hung, attempts=2, first_token_s=2)
    send(page, "Anyone there?")
    failed = page.locator("#messages .msg-assistant[data-status=error]")
    failed.wait_for(timeout=30_000)
    notice = page.inner_text("#chat-notice")
    assert "NoBackendAvailable" in notice and "timed out after 2s waiting for the first token" in notice
    assert hung.posts == 2  # tried, timed out, retried once, timed out: then the user is told
    # Nothing stays stuck: the composer sends again (and fails the same clear way).
    assert page.locator("#send").is_visible() and not page.locator("#stop").is_visible()
    send(page, "Still there?")
    page.locator("#messages .msg-assistant[data-status=error]").nth(1).wait_for(timeout=30_000)
    open_sheet(page, "device")
    assert "gen_ai.request.error" in activity(page)
    w.assert_clean()


def test_stop_before_the_first_token_ends_the_answer_at_once(page, serve, tmp_path_factory, hung):
    w = chat_with_hung_endpoint(page, serve, tmp_path_factory.mktemp("stop-early"), hung, attempts=1,
                                first_token_s=120)
    with page.expect_request(hung.origin + "/v1/chat/completions"):
        send(page, "Take your time.")
    page.locator("#stop").wait_for()  # the request is out and nothing has come back
    page.press("#prompt", "Escape")
    stopped = page.locator("#messages .msg-assistant[data-status=stopped]")
    stopped.wait_for(timeout=5_000)  # far under the 120 s timeout: Stop itself ended it
    assert page.locator("#send").is_visible() and not page.locator("#stop").is_visible()
    assert page.inner_text("#chat-notice").strip() == ""
    w.assert_clean()


def test_without_webgpu_or_endpoint_chromes_built_in_model_answers(launch_chromium, serve, tmp_path_factory):
    site = site_with(serve, tmp_path_factory.mktemp("builtin"), model="Double-Chat-q4f32_1-MLC")
    page = launch_chromium(QUIET_FLAGS).new_page()  # no --enable-unsafe-webgpu: no WebGPU adapter
    page.add_init_script(path=str(CHROME_AI))
    w = open_chat(page, site)
    notice = page.locator("#backend-notice[data-kind=builtin]")
    notice.wait_for()
    assert "Chrome's built-in model" in notice.inner_text()
    send(page, "hello there")
    done = page.locator("#messages .msg-assistant[data-status=done]")
    done.wait_for(timeout=60_000)
    assert done.locator(".body").inner_text().strip() == "Echo: hello there"
    assert "chrome-ai" in done.locator(".meta").inner_text()
    assert answers(page).count() == 1
    assert page.evaluate("window.chromeAIDouble.prompts.length") == 1
    w.assert_clean()
