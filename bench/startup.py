#!/usr/bin/env python3
"""Start-up figures: navigation -> "ready" for this app vs a stock PyScript hello-world page.

    python3 bench/startup.py [--runs 7] [--short] [--json PATH]

Both pages use the same vendored runtime from dist/, served on 127.0.0.1; ours starts Python from the
memory snapshot build.py makes (static/python-start.js), the stock page as PyScript does. "Cold" is a new browser
context (empty HTTP cache); "warm" is a reload in the same context. Runs alternate between the two
pages so machine noise hits both alike. Prints min / median / max in milliseconds and the ratio
ours / stock of the medians (goal: <= 1.0). For our page also: navigation -> the chat mounted and
taking a message (the stock page has no chat).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import build  # noqa: E402
from bench._report import environment, print_environment, write_json  # noqa: E402
from tests.browser.conftest import CHROMIUM, QUIET_FLAGS, WEBGPU_FLAGS  # noqa: E402

HELLO = """<!doctype html>
<html><head><meta charset="utf-8"><title>hello</title>
<link rel="stylesheet" href="./static/vendor/pyscript/core.css">
<script type="module" src="./static/vendor/pyscript/core.js"></script>
</head><body data-state="loading">
<script type="py" config='{"interpreter": "./static/vendor/pyodide/pyodide.mjs"}'>
from pyscript import document
document.body.dataset.state = "ready"
</script></body></html>
"""

# Records when <body data-state> first becomes "ready", in ms since navigation start, and (our page
# only) when the chat is mounted and takes a message (<section id="chat" data-state="ready">).
MARK_READY = """
new MutationObserver(() => {
  if (window.__readyAt === undefined && document.body && document.body.dataset.state === 'ready') {
    window.__readyAt = performance.now();
  }
  const chat = document.getElementById('chat');
  if (window.__chatAt === undefined && chat && chat.dataset.state === 'ready') window.__chatAt = performance.now();
}).observe(document, {subtree: true, attributes: true, attributeFilter: ['data-state']});
"""


def time_to_ready(page, url: str, reload: bool = False, chat: bool = False) -> tuple[float, float | None]:
    """ms from navigation to "ready", and to the chat taking messages when ``chat``."""
    if reload:
        page.reload()
    else:
        page.goto(url)
    page.wait_for_function("() => window.__readyAt !== undefined", timeout=120_000)
    if chat:
        page.wait_for_function("() => window.__chatAt !== undefined", timeout=120_000)
    return float(page.evaluate("window.__readyAt")), page.evaluate("window.__chatAt")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--short", action="store_true", help="a quick check that it runs (CI): 1 run")
    parser.add_argument("--json", help="also write the figures to this file (python3 build.py bench)")
    args = parser.parse_args()
    if args.short:
        args.runs = 1
    elif args.runs < 5:
        parser.error("use at least 5 runs")

    from playwright.sync_api import sync_playwright

    dist = build.build()
    with tempfile.TemporaryDirectory() as tmp:
        hello_root = Path(tmp)
        (hello_root / "index.html").write_text(HELLO)
        (hello_root / "static").symlink_to(dist / "static")
        servers = {"ours": build.make_server(dist), "stock": build.make_server(hello_root)}
        urls = {}
        for name, server in servers.items():
            build.start_in_thread(server)
            urls[name] = f"http://127.0.0.1:{server.server_address[1]}/"
        results: dict[tuple[str, str], list[float]] = {}
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=QUIET_FLAGS + WEBGPU_FLAGS)
            for run in range(args.runs):
                for name, url in (urls.items() if run % 2 == 0 else reversed(urls.items())):
                    context = browser.new_context()
                    context.add_init_script(MARK_READY)
                    page = context.new_page()
                    for kind in ("cold", "warm"):
                        ready, chat = time_to_ready(page, url, reload=kind == "warm", chat=name == "ours")
                        results.setdefault((name, kind), []).append(ready)
                        if chat is not None:
                            results.setdefault(("ours", f"{kind} chat"), []).append(float(chat))
                    context.close()
            version = browser.version
            browser.close()
        for server in servers.values():
            server.shutdown()
            server.server_close()

    env = environment(dist, version)
    print_environment(env)
    print(f"navigation -> ready, ms, {args.runs} runs each, 127.0.0.1")
    print(f"{'page':<8}{'cache':<11}{'min':>8}{'median':>8}{'max':>8}")
    for (name, kind), values in sorted(results.items()):
        print(f"{name:<8}{kind:<11}{min(values):>8.0f}{statistics.median(values):>8.0f}{max(values):>8.0f}")
    figures: dict[str, object] = dict(env, runs=args.runs)
    for kind in ("cold", "warm"):
        ratio = statistics.median(results[("ours", kind)]) / statistics.median(results[("stock", kind)])
        figures[f"ratio {kind}"] = ratio
        figures[f"ours {kind} ms"] = statistics.median(results[("ours", kind)])
        figures[f"stock {kind} ms"] = statistics.median(results[("stock", kind)])
        print(f"ratio ours/stock ({kind}, medians): {ratio:.2f}")
    for kind in ("cold", "warm"):
        chat = statistics.median(results[("ours", f"{kind} chat")])
        figures[f"ours {kind} chat ms"] = chat
        print(f"ours, navigation -> chat takes a message ({kind}, median): {chat:.0f} ms")
    write_json(args.json, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
