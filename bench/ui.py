#!/usr/bin/env python3
"""What a streamed answer costs the page: main-thread long tasks, frame gaps, heap and proxies.

    python3 bench/ui.py [--tokens 500] [--delay-ms 10] [--messages 200] [--short]

One Chromium page with the shipped app; the chat answers from the engine test double (web-llm's real
worker path, model execution faked; tests/browser/double), selected by static/chat-config.json.

1. Streaming ``--tokens`` tokens at 1000/``--delay-ms`` tokens/s into the conversation view (sent
   through the composer): count of main-thread tasks over 50 ms (PerformanceObserver 'longtask')
   and the worst gap between animation frames (requestAnimationFrame deltas) while it streams.
2. ``--messages`` streamed answers (Retry on one answer, so what is on screen stays the same size):
   JS heap (CDP Runtime.getHeapUsage after a forced GC, and Python's gc.collect()) and the Python
   proxies the app created with ffi.create_proxy that are still alive, before and after.

Goals: 0 long tasks, <= 1 MB heap growth, 0 leaked proxies.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import build  # noqa: E402
from bench._report import environment, print_environment  # noqa: E402
from tests.browser.conftest import CHROMIUM, QUIET_FLAGS, WEBGPU_FLAGS, PagePython  # noqa: E402
from tests.browser.double import CHAT_MODEL, OVERLAY, app_config  # noqa: E402

OBSERVE = """() => {
  window.__long = [];
  new PerformanceObserver((list) => { for (const e of list.getEntries()) window.__long.push(e.duration); })
    .observe({type: 'longtask'});
  window.__gap = 0; window.__frames = 0; window.__measure = false;
  let last = performance.now();
  const tick = (t) => {
    if (window.__measure) { window.__gap = Math.max(window.__gap, t - last); window.__frames += 1; }
    last = t;
    requestAnimationFrame(tick);
  };
  requestAnimationFrame(tick);
}"""
START = "() => { window.__long = []; window.__gap = 0; window.__frames = 0; window.__measure = true; }"
STOP = "() => { window.__measure = false; return [window.__long, window.__gap, window.__frames]; }"

# Counts the app's proxies: every ffi.create_proxy result, and whether it was destroyed since.
TRACK_PROXIES = """
import app.ffi._core as _ffi  # every bridge module creates its proxies through _core.create_proxy
from pyodide.ffi import create_proxy as _real_create_proxy
def _probe(p):  # a destroyed proxy throws when JS calls it
    try:
        p.toString()
        return True
    except Exception:
        return False
_made = []
created = [0]
def _counting_create_proxy(obj, *args, **kwargs):
    proxy = _real_create_proxy(obj, *args, **kwargs)
    _made.append(proxy)
    created[0] += 1
    return proxy
_ffi.create_proxy = _counting_create_proxy
def live_proxies():
    global _made
    _made = [p for p in _made if _probe(p)]
    return len(_made)
_check = _real_create_proxy(lambda: 0)
assert _probe(_check) is True
_check.destroy()
assert _probe(_check) is False  # the probe tells a destroyed proxy from a live one
"""
HEAP = "() => performance.memory ? performance.memory.usedJSHeapSize : null"


def heap(page, cdp, py) -> int:
    py("import gc; gc.collect(); 0")
    cdp.send("HeapProfiler.collectGarbage")
    return int(cdp.send("Runtime.getHeapUsage")["usedSize"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=500)
    parser.add_argument("--delay-ms", type=int, default=10)
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--message-tokens", type=int, default=20)
    parser.add_argument("--short", action="store_true", help="a quick check that it runs (CI): 30 tokens, 5 answers")
    args = parser.parse_args()
    if args.short:
        args.tokens, args.delay_ms, args.messages, args.message_tokens = 30, 1, 5, 5
    from playwright.sync_api import sync_playwright

    dist = build.build()
    config_file = Path(tempfile.mkdtemp()) / "chat-config.json"
    server = build.make_server(dist, overlay={**OVERLAY, "static/chat-config.json": config_file})
    build.start_in_thread(server)
    origin = f"http://127.0.0.1:{server.server_address[1]}"
    config_file.write_text(json.dumps({"model": CHAT_MODEL, "app_config": app_config(origin)}))
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=QUIET_FLAGS + WEBGPU_FLAGS)
        page = browser.new_page()
        page.goto(origin + "/")
        page.wait_for_selector("#chat[data-state=ready]", timeout=60_000)
        page.click("#open-models")  # the model picker (its sheet) is part of the page being measured
        page.wait_for_selector("#models[data-state=ready]", timeout=60_000)
        py = PagePython(page)
        cdp = page.context.new_cdp_session(page)
        page.evaluate(OBSERVE)

        def send(text: str) -> None:
            count = page.locator("#messages .msg-assistant[data-status=done]").count()
            page.fill("#prompt", text)
            page.press("#prompt", "Enter")
            page.wait_for_function(f"() => document.querySelectorAll('#messages .msg-assistant[data-status=done]').length > {count}",
                                   timeout=600_000)

        send("warm up [[tokens=20]]")  # model load, first imports, first render
        page.evaluate(START)
        send(f"stream [[tokens={args.tokens}]] [[delay={args.delay_ms}]]")
        longs, gap, frames = page.evaluate(STOP)

        py(TRACK_PROXIES)
        retry = f"""
from app.ui import page as _p
_chat = _p.current.chat
for _ in range({args.messages}):
    _reply = _chat.current.peek().messages.peek()[-1]
    await _chat.retry(_reply.id)
_chat.current.peek().messages.peek()[-1].text.peek().count(' ') + 1
"""
        page.fill("#prompt", "")
        send(f"memory [[tokens={args.message_tokens}]]")
        py(retry.replace(str(args.messages), "3"), timeout_ms=600_000)  # warm the retry path
        proxies_before = py("live_proxies()")
        created_before = py("created[0]")
        heap_before = heap(page, cdp, py)
        tokens = py(retry, timeout_ms=1_200_000)
        page.wait_for_selector("#messages .msg-assistant[data-rendered=markdown]")
        heap_after = heap(page, cdp, py)
        proxies_after = py("live_proxies()")
        created = py("created[0]") - created_before
        version = browser.version
        browser.close()
    server.shutdown()
    server.server_close()

    print_environment(environment(dist, version))
    print(f"engine double, {CHAT_MODEL}")
    print(f"streaming {args.tokens} tokens at {1000 / args.delay_ms:.0f} tokens/s:")
    print(f"  long tasks (> 50 ms): {len(longs)}" + (f"  durations ms: {[round(d) for d in longs]}" if longs else ""))
    print(f"  worst frame gap: {gap:.1f} ms over {frames} frames")
    print(f"{args.messages} streamed answers ({tokens} tokens each, Retry on one answer):")
    print(f"  JS heap: {heap_before / 1e6:.2f} MB -> {heap_after / 1e6:.2f} MB "
          f"({(heap_after - heap_before) / 1e6:+.3f} MB)")
    print(f"  live app proxies: {proxies_before} -> {proxies_after} ({proxies_after - proxies_before:+d} leaked; "
          f"{created} created and destroyed meanwhile)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
