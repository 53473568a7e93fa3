#!/usr/bin/env python3
"""How fast the conversation search is in the page's Python, over many conversations.

    python3 bench/search.py [--conversations 1000] [--messages 20] [--runs 7] [--short]

One Chromium page with the shipped app (Pyodide). ``--conversations`` conversations of ``--messages``
messages of about 400 characters each are put into the chat's state (not stored), then
``ChatState.search`` runs: the first search builds the case-folded index, the next ones reuse it.
Prints medians in milliseconds (what one keystroke in the search box costs once the index exists).
Goal: a warm search under 50 ms (what feels instant while typing) for 1,000 conversations of 20 messages.
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

MEASURE = """
import statistics, time
from app.ui import page
from app.ui.conversations import Conversation, Message
chat = page.current.chat
words = "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor".split()
chat.conversations.set([Conversation(id=f"b{i}", title=f"chat {i}", messages=[
    Message("user" if j % 2 == 0 else "assistant",
            " ".join(words[(i + j + k) % len(words)] for k in range(60)) + f" topic{i % 97}")
    for j in range(MESSAGES)]) for i in range(CONVERSATIONS)])
chat._search_cache.clear()
start = time.perf_counter(); found = chat.search("topic5 lorem"); cold = (time.perf_counter() - start) * 1000
warm = []
for n in range(RUNS):
    start = time.perf_counter(); chat.search(f"topic{n} amet"); warm.append((time.perf_counter() - start) * 1000)
chat.conversations.set([])
{"cold_ms": round(cold, 1), "warm_ms": round(statistics.median(warm), 2), "found": len(found)}
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=20)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--short", action="store_true", help="a quick check that it runs (CI): 20 x 5, 1 run")
    args = parser.parse_args()
    if args.short:
        args.conversations, args.messages, args.runs = 20, 5, 1
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
        code = (MEASURE.replace("CONVERSATIONS", str(args.conversations))
                .replace("MESSAGES", str(args.messages)).replace("RUNS", str(args.runs)))
        result = PagePython(page)(code, timeout_ms=600_000)
        version = browser.version
        browser.close()
    server.shutdown()
    print_environment(environment(dist, version))
    chars = args.conversations * args.messages * 400
    print(f"search over {args.conversations} conversations x {args.messages} messages (~{chars / 1e6:.0f} M chars), "
          f"Pyodide in Chromium: first (builds the index) {result['cold_ms']} ms, "
          f"next (median of {args.runs}) {result['warm_ms']} ms; {result['found']} found")
    return 0


if __name__ == "__main__":
    sys.exit(main())
