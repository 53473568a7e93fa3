#!/usr/bin/env python3
"""Chat with your files (app/knowledge.py): retrieval quality, embedding throughput, search latency.

    python3 bench/knowledge.py [--chunks 400] [--sizes 10000,50000] [--runs 5]

One Chromium page with the shipped app (Pyodide) and the engine double as web-llm's model execution
(its embedding pipeline is a hashed bag of words: the throughput measured is web-llm's worker path
plus this app's chunking, batching and storing, not a real model's GPU time). Prints:
- retrieval quality on the browser test's set (tests/browser/test_knowledge.py: 20 documents, one
  question each): how many find their passage at rank 1 and in the top 3;
- embedding throughput: one Markdown file of about ``--chunks`` chunks added (chunk, embed in
  batches of 16 through the worker, store in IndexedDB), chunks per second;
- search latency over 10k and 50k chunks of 384 dimensions (an index filled with copies of the
  stored vectors; exact search is the same work whatever they hold): median of ``--runs`` top-5
  searches (2 for the plain-Python index), the query's embedding excluded, for the page's
  Float32Array index (static/bridge/vectors.js) and the plain-Python one (app.knowledge.PyVectorIndex).
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
from tests.browser.double import CHAT_MODEL, EMBED_MODEL, OVERLAY, app_config  # noqa: E402
from tests.browser.test_knowledge import DOCS  # noqa: E402

MEASURE = """
import base64, json, statistics, time
from app import session
k = session.current.knowledge()
docs = json.loads(DOCS_JSON)
for name, text, _q, _a in docs:
    await k.add(name, text)
top1 = top3 = 0
for name, _t, question, answer in docs:
    hits = await k.search(question, k=3)
    ranks = [h.number for h in hits if h.name == name and answer in h.text]
    top1 += ranks == [1]
    top3 += bool(ranks)
paragraphs = [f"## Part {i}\\n\\n" + " ".join(f"word{(i * 7 + j) % 997} fact{i}" for j in range(70)) for i in range(CHUNKS)]
text = "# Big\\n\\n" + "\\n\\n".join(paragraphs)
start = time.perf_counter()
info = await k.add("big.md", text)
embed_s = time.perf_counter() - start
from app.ffi.vectors import js_vector_index
from app.knowledge import PyVectorIndex
latency = {}
dims = k._dims
stored = b"".join(base64.b64decode(r["vectors"]) for r in (await k._kv.items()).values())
rows = len(stored) // (4 * dims)
query = (await k._embedder.embed(["word5 fact3"]))[0]
for size in SIZES:
    reps = -(-size // rows)
    data = (stored * reps)[:size * dims * 4]
    for kind, index in (("js", await js_vector_index()), ("python", PyVectorIndex())):
        index.append(data, dims)
        runs = []
        for _ in range(RUNS if kind == "js" else 2):
            start = time.perf_counter()
            index.search(query, 5)
            runs.append((time.perf_counter() - start) * 1000)
        latency[f"{size} {kind}"] = round(statistics.median(runs), 1)
        index = None
{"top1": top1, "top3": top3, "n": len(docs), "chunks": info.chunks, "embed_s": round(embed_s, 2), "latency": latency, "dims": dims}
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=400)
    parser.add_argument("--sizes", default="10000,50000")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--short", action="store_true", help="a quick check that it runs (CI): 40 chunks, 1,000-chunk search, 1 run")
    args = parser.parse_args()
    if args.short:
        args.chunks, args.sizes, args.runs = 40, "1000", 1
    from playwright.sync_api import sync_playwright

    dist = build.build()
    config_file = Path(tempfile.mkdtemp()) / "chat-config.json"
    server = build.make_server(dist, overlay={**OVERLAY, "static/chat-config.json": config_file})
    build.start_in_thread(server)
    origin = f"http://127.0.0.1:{server.server_address[1]}"
    config_file.write_text(json.dumps({"model": CHAT_MODEL, "app_config": app_config(origin),
                                       "embedding_model": EMBED_MODEL}))
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=QUIET_FLAGS + WEBGPU_FLAGS)
        page = browser.new_page()
        page.goto(origin + "/")
        page.wait_for_selector("#chat[data-state=ready]", timeout=60_000)
        code = (MEASURE.replace("DOCS_JSON", repr(json.dumps(DOCS))).replace("CHUNKS", str(args.chunks))
                .replace("SIZES", repr([int(s) for s in args.sizes.split(",")])).replace("RUNS", str(args.runs)))
        r = PagePython(page)(code, timeout_ms=900_000)
        version = browser.version
        browser.close()
    server.shutdown()
    print_environment(environment(dist, version))
    print(f"retrieval on the test set: {r['top1']}/{r['n']} at rank 1, {r['top3']}/{r['n']} in the top 3")
    print(f"embedding throughput (engine double, web-llm worker path, IndexedDB write): {r['chunks']} chunks in "
          f"{r['embed_s']} s = {r['chunks'] / r['embed_s']:.0f} chunks/s")
    for key, ms in r["latency"].items():
        size, kind = key.split()
        how = ("Float32Array in the page (what the app uses)" if kind == "js"
               else "plain Python in Pyodide, math.sumprod (PyVectorIndex)")
        print(f"exact top-5 search, {int(size):,} chunks x {r['dims']} dims, {how}: {ms} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
