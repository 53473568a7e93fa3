"""A dead or stalled engine in real Chromium: the answer ends with a typed error at once, what arrived
is kept, and the next message restarts the worker and loads the model again, saying so.

The worker is web-llm's real worker code with the engine double's pipeline (tests/browser/double);
the page's own bridge (static/bridge/engine.js) is what notices the death.
"""

from __future__ import annotations

from tests.browser.conftest import READY_TIMEOUT_MS
from tests.browser.double import SLOW_MODEL
from tests.browser.ui_helpers import answers, open_chat, ui_site

# Every Worker the page creates, so a test can kill the engine's from outside (as the browser does
# when a worker runs out of memory).
RECORD_WORKERS = """
window.__workers = [];
const NativeWorker = window.Worker;
window.Worker = class extends NativeWorker {
  constructor(...args) { super(...args); window.__workers.push(this); }
};
"""


def send(page, text: str) -> None:
    page.fill("#prompt", text)
    page.press("#prompt", "Enter")


def wait_for_text(page, nth: int, words: int) -> None:
    """Until answer ``nth`` shows at least ``words`` words."""
    page.wait_for_function(
        """([nth, words]) => {
          const body = document.querySelectorAll('#messages .msg-assistant .body')[nth];
          return !!body && body.textContent.trim().split(/\\s+/).filter(Boolean).length >= words;
        }""", arg=[nth, words], timeout=60_000)


def wait_for_notice(page, part: str, timeout: int = 60_000) -> None:
    page.wait_for_function(
        "part => (document.querySelector('#chat-notice')?.textContent || '').includes(part)",
        arg=part, timeout=timeout)


def recovers(page, reason: str) -> None:
    """The next message reloads the model in a new worker (the notice says why) and is answered."""
    send(page, "are you back")
    wait_for_notice(page, f"The model stopped ({reason}); reloading")
    page.locator("#messages .msg-assistant:nth-child(4)[data-status=done]").wait_for(timeout=READY_TIMEOUT_MS)
    assert answers(page).nth(1).locator(".body").inner_text() == "Echo: are you back"
    assert page.evaluate("() => window.__workers.length") == 2
    assert page.inner_text("#chat-notice").strip() == ""
    assert page.is_enabled("#prompt")


def test_a_worker_killed_mid_answer_ends_the_answer_at_once_and_the_next_message_restarts_it(
        page, serve, tmp_path_factory):
    # The slow double model takes about a second to load, so the reload notice can be seen.
    site = ui_site(serve, tmp_path_factory.mktemp("killed"), model=SLOW_MODEL)
    page.add_init_script(RECORD_WORKERS)
    w = open_chat(page, site)
    send(page, "go [[tokens=400]] [[delay=30]]")
    wait_for_text(page, 0, 3)
    page.evaluate("() => window.__workers[0].terminate()")  # what the browser does to a worker out of memory
    failed = page.locator("#messages .msg-assistant[data-status=error]")
    failed.wait_for(timeout=10_000)  # at once, not after a timeout
    kept = failed.locator(".body").inner_text()
    assert kept.startswith("t0 t1 t2") and "t399" not in kept
    assert "EngineCrashed" in page.inner_text("#chat-notice")
    recovers(page, "worker crashed")
    w.assert_clean()


def test_gpu_device_lost_mid_answer_fails_fast_and_the_next_message_restarts_the_worker(
        page, serve, tmp_path_factory):
    site = ui_site(serve, tmp_path_factory.mktemp("device"), model=SLOW_MODEL)
    page.add_init_script(RECORD_WORKERS)
    w = open_chat(page, site)
    send(page, "go [[tokens=50]] [[throw=DeviceLostError:4]]")
    failed = page.locator("#messages .msg-assistant[data-status=error]")
    failed.wait_for(timeout=10_000)
    assert failed.locator(".body").inner_text().strip() == "t0 t1 t2 t3"
    assert "DeviceLost" in page.inner_text("#chat-notice")
    recovers(page, "GPU device lost")
    w.assert_clean()


def test_an_answer_that_stalls_mid_stream_ends_with_a_typed_error_and_the_chat_goes_on(
        page, serve, tmp_path_factory):
    site = ui_site(serve, tmp_path_factory.mktemp("stall"), model=SLOW_MODEL, limits={"idle_s": 1})
    page.add_init_script(RECORD_WORKERS)
    w = open_chat(page, site)
    # Every decode step of this answer takes ten minutes: after the first token nothing more comes.
    send(page, "go [[tokens=5]] [[delay=600000]]")
    failed = page.locator("#messages .msg-assistant[data-status=error]")
    failed.wait_for(timeout=30_000)
    assert failed.locator(".body").inner_text().strip() == "t0"
    assert "StreamStalled: no new token for 1s" in page.inner_text("#chat-notice")
    # The engine did not stop when asked (its step never ends): it is restarted, not waited for.
    recovers(page, "engine stopped responding")
    w.assert_clean()


def test_an_error_event_from_the_worker_fails_the_answer_with_its_message(page, serve, tmp_path_factory):
    """An uncaught error in the worker leaves web-llm's state unknown: the worker is let go of. (The
    event is dispatched by the test: the double's worker has no uncaught errors of its own.)"""
    site = ui_site(serve, tmp_path_factory.mktemp("error-event"), model=SLOW_MODEL)
    page.add_init_script(RECORD_WORKERS)
    w = open_chat(page, site)
    send(page, "go [[tokens=400]] [[delay=30]]")
    wait_for_text(page, 0, 2)
    page.evaluate("() => window.__workers[0].dispatchEvent(new ErrorEvent('error', {message: 'Uncaught RangeError: Array buffer allocation failed'}))")
    failed = page.locator("#messages .msg-assistant[data-status=error]")
    failed.wait_for(timeout=10_000)
    assert "EngineCrashed" in page.inner_text("#chat-notice")
    assert "Array buffer allocation failed" in page.inner_text("#chat-notice")
    recovers(page, "worker crashed")
    w.assert_clean()
