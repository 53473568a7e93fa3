#!/usr/bin/env python3
"""What the Python client costs per streamed chunk, against web-llm used straight from JavaScript.

    python3 bench/stream_overhead.py [--chunks 2000] [--runs 5]

One Chromium page, the engine test double (real web-llm worker path, deterministic tokens with no
model compute), two engines on two workers: a plain JS ``for await`` over
``engine.chat.completions.create({stream: true})``, and ``client.chat.completions.create(stream=True)``
from Python in the same page. Runs alternate. Prints chunks/s and time to first chunk (median of
runs) and the ratios. Goal: ratio >= 0.99, added first-chunk time <= 5 ms.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import build  # noqa: E402
from tests.browser.conftest import CHROMIUM, QUIET_FLAGS, WEBGPU_FLAGS, PagePython  # noqa: E402
from tests.browser.double import CHAT_MODEL, OVERLAY, app_config  # noqa: E402

JS_SETUP = """async ([config, model]) => {
  const m = await import(new URL('static/vendor/web-llm/index.js', document.baseURI).href);
  const worker = new Worker(new URL('static/webllm-worker.js', document.baseURI), {type: 'module'});
  window.jsEngine = new m.WebWorkerMLCEngine(worker, {appConfig: config});
  await window.jsEngine.reload(model);
}"""
JS_RUN = """async (prompt) => {
  const t0 = performance.now();
  let first = null, n = 0;
  const stream = await window.jsEngine.chat.completions.create(
      {messages: [{role: 'user', content: prompt}], stream: true});
  for await (const chunk of stream) {
    if (first === null) first = performance.now() - t0;
    n += 1;
  }
  return [n, performance.now() - t0, first];
}"""
PY_RUN = """
import time
t0 = time.perf_counter()
first = None
n = 0
stream = await client.chat.completions.create(messages=[{{"role": "user", "content": {prompt!r}}}], stream=True)
async for chunk in stream:
    if first is None:
        first = (time.perf_counter() - t0) * 1000
    n += 1
[n, (time.perf_counter() - t0) * 1000, first]
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--delay-ms", type=int, default=0,
                        help="engine delay per token (0: as fast as it can; 10: a 100 tokens/s model)")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    dist = build.build()
    server = build.make_server(dist, overlay=OVERLAY)
    build.start_in_thread(server)
    origin = f"http://127.0.0.1:{server.server_address[1]}"
    config = app_config(origin)
    prompt = f"bench [[tokens={args.chunks}]]" + (f" [[delay={args.delay_ms}]]" if args.delay_ms else "")
    results: dict[str, list[list[float]]] = {"js": [], "python": []}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=QUIET_FLAGS + WEBGPU_FLAGS)
        page = browser.new_page()
        page.goto(origin + "/")
        page.wait_for_selector("body[data-state=ready]", timeout=60_000)
        py = PagePython(page)
        page.evaluate(JS_SETUP, [config, CHAT_MODEL])
        py(f"""
import json
from app.client import Client
from app.backends.webllm import WebLLMBackend
backend = WebLLMBackend(app_config=json.loads({json.dumps(json.dumps(config))}))
await backend.load({CHAT_MODEL!r})
client = Client(backend)
""")
        # One warm-up each (JIT, first-import costs), then alternate.
        page.evaluate(JS_RUN, prompt)
        py(PY_RUN.format(prompt=prompt), timeout_ms=600_000)
        for _ in range(args.runs):
            results["js"].append(page.evaluate(JS_RUN, prompt))
            results["python"].append(py(PY_RUN.format(prompt=prompt), timeout_ms=600_000))
        version = browser.version
        browser.close()
    server.shutdown()
    server.server_close()

    print(f"{args.chunks} tokens per stream, engine delay {args.delay_ms} ms/token, {args.runs} runs each "
          f"(medians), Chromium {version}")
    print(f"{'consumer':<10}{'chunks':>8}{'chunks/s':>11}{'first chunk ms':>16}")
    rate, first = {}, {}
    for name, runs in results.items():
        rate[name] = statistics.median(n / (ms / 1000) for n, ms, _ in runs)
        first[name] = statistics.median(f for _, _, f in runs)
        print(f"{name:<10}{runs[0][0]:>8.0f}{rate[name]:>11.0f}{first[name]:>16.2f}")
    print(f"ratio python/js chunks/s: {rate['python'] / rate['js']:.3f}")
    print(f"added time to first chunk: {first['python'] - first['js']:+.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
