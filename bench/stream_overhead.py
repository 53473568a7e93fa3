#!/usr/bin/env python3
"""What the Python client costs per streamed chunk, against web-llm used straight from JavaScript.

    python3 bench/stream_overhead.py [--chunks 2000] [--runs 7] [--delay-ms 0] [--short] [--json PATH]

One Chromium page, the engine test double (real web-llm worker path, deterministic tokens with no
model compute), engines on their own workers: a plain JS ``for await`` over
``engine.chat.completions.create({stream: true})``, and ``client.chat.completions.create(stream=True)``
from Python in the same page, one chunk object per delta (``async for chunk in stream``). Each run
streams once on each side, back to back (the order alternating), all in one process; printed: the
medians of chunks/s and time to first chunk over the runs, and the ratios of those medians.
Also: Python reading the same stream in batches (``stream.batches()``, as the chat view does), and
the worst case, two streams at once (two engines) on each side, chunks/s of both together.
Goals: ratio >= 0.99, added time to first chunk <= 1 ms.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import build  # noqa: E402
from bench._report import environment, median, print_environment, write_json  # noqa: E402
from tests.browser.conftest import CHROMIUM, QUIET_FLAGS, WEBGPU_FLAGS, PagePython  # noqa: E402
from tests.browser.double import CHAT_MODEL, OVERLAY, app_config  # noqa: E402

JS_SETUP = """async ([config, model, count]) => {
  const m = await import(new URL('static/vendor/web-llm/index.js', document.baseURI).href);
  window.jsEngines = [];
  for (let i = 0; i < count; i++) {
    const worker = new Worker(new URL('static/webllm-worker.js', document.baseURI), {type: 'module'});
    const engine = new m.WebWorkerMLCEngine(worker, {appConfig: config});
    await engine.reload(model);
    window.jsEngines.push(engine);
  }
}"""
# [chunks of all streams, ms until the last ended, ms to the first chunk of the first stream]
JS_RUN = """async ([prompt, streams]) => {
  const t0 = performance.now();
  let first = null, n = 0;
  const one = async (engine) => {
    const stream = await engine.chat.completions.create(
        {messages: [{role: 'user', content: prompt}], stream: true});
    for await (const chunk of stream) {
      if (first === null) first = performance.now() - t0;
      n += 1;
    }
  };
  await Promise.all(window.jsEngines.slice(0, streams).map(one));
  return [n, performance.now() - t0, first];
}"""
PY_SETUP = """
import asyncio, json, time
from app.client import Client
from app.backends.webllm import WebLLMBackend
clients = []
for _ in range({count}):
    backend = WebLLMBackend(app_config=json.loads({config!r}))
    await backend.load({model!r})
    clients.append(Client(backend))

async def chunks(client, prompt, t0, first):
    n = 0
    stream = await client.chat.completions.create(messages=[{{"role": "user", "content": prompt}}], stream=True)
    async for chunk in stream:
        if not first:
            first.append((time.perf_counter() - t0) * 1000)
        n += 1
    return n

async def batches(client, prompt, t0, first):
    n = 0
    stream = await client.chat.completions.create(messages=[{{"role": "user", "content": prompt}}], stream=True)
    async for batch in stream.batches():
        if not first:
            first.append((time.perf_counter() - t0) * 1000)
        n += len(batch)
    return n

async def run(prompt, streams, read):
    t0 = time.perf_counter()
    first = []
    counts = await asyncio.gather(*(read(c, prompt, t0, first) for c in clients[:streams]))
    return [sum(counts), (time.perf_counter() - t0) * 1000, first[0]]
"""
PY_RUN = "await run({prompt!r}, {streams}, {read})"

SIDES = {  # name -> (streams at once, how the side reads)
    "js": (1, None),
    "python": (1, "chunks"),
    "python batches": (1, "batches"),
    "js x2": (2, None),
    "python x2": (2, "chunks"),
}
PAIRS = {"python": "js", "python batches": "js", "python x2": "js x2"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--delay-ms", type=int, default=0,
                        help="engine delay per token (0: as fast as it can; 10: a 100 tokens/s model)")
    parser.add_argument("--short", action="store_true", help="a quick check that it runs (CI): 100 chunks, 1 run")
    parser.add_argument("--json", help="also write the figures to this file (python3 build.py bench)")
    args = parser.parse_args()
    if args.short:
        args.chunks, args.runs = 100, 1
    elif args.runs < 5:
        parser.error("use at least 5 runs")
    from playwright.sync_api import sync_playwright

    dist = build.build()
    server = build.make_server(dist, overlay=OVERLAY)
    build.start_in_thread(server)
    origin = f"http://127.0.0.1:{server.server_address[1]}"
    config = app_config(origin)
    prompt = f"bench [[tokens={args.chunks}]]" + (f" [[delay={args.delay_ms}]]" if args.delay_ms else "")
    results: dict[str, list[list[float]]] = {name: [] for name in SIDES}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=QUIET_FLAGS + WEBGPU_FLAGS)
        page = browser.new_page()
        page.goto(origin + "/")
        page.wait_for_selector("body[data-state=ready]", timeout=60_000)
        py = PagePython(page)
        page.evaluate(JS_SETUP, [config, CHAT_MODEL, 2])
        py(PY_SETUP.format(count=2, config=json.dumps(config), model=CHAT_MODEL))

        def once(name: str) -> list[float]:
            streams, read = SIDES[name]
            if read is None:
                return page.evaluate(JS_RUN, [prompt, streams])
            return py(PY_RUN.format(prompt=prompt, streams=streams, read=read), timeout_ms=600_000)

        for name in SIDES:  # one warm-up each (JIT, first-import costs)
            once(name)
        for run in range(args.runs):
            for python_side, js_side in PAIRS.items():
                pair = (js_side, python_side) if run % 2 == 0 else (python_side, js_side)
                for name in pair:
                    results[name].append(once(name))
        version = browser.version
        browser.close()
    server.shutdown()
    server.server_close()

    env = environment(dist, version)
    print_environment(env)
    print(f"{args.chunks} tokens per stream, engine delay {args.delay_ms} ms/token, {args.runs} runs "
          f"of each, alternating, in one page (medians)")
    print(f"{'consumer':<16}{'chunks':>8}{'chunks/s':>11}{'first chunk ms':>16}")
    rate = {name: [n / (ms / 1000) for n, ms, _ in runs] for name, runs in results.items()}
    first = {name: [f for _, _, f in runs] for name, runs in results.items()}
    for name, runs in results.items():
        print(f"{name:<16}{runs[0][0]:>8.0f}{median(rate[name]):>11.0f}{median(first[name]):>16.2f}")
    figures: dict[str, object] = dict(env, chunks=args.chunks, runs=args.runs, delay_ms=args.delay_ms)
    for python_side, js_side in PAIRS.items():
        ratio = median(rate[python_side]) / median(rate[js_side])
        figures[f"ratio {python_side}"] = ratio
        figures[f"{python_side} chunks/s"] = median(rate[python_side])
        figures[f"{js_side} chunks/s"] = median(rate[js_side])
        print(f"ratio {python_side}/{js_side} chunks/s (medians): {ratio:.3f}")
    added = median(first["python"]) - median(first["js"])
    figures["added first chunk ms"] = added
    print(f"added time to first chunk: {added:+.2f} ms")
    write_json(args.json, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
