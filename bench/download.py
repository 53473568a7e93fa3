#!/usr/bin/env python3
"""Our model download against web-llm's own download strategy, in one Chromium, from one local server.

    python3 bench/download.py [--shards 10] [--shard-mib 24] [--runs 5] [--short] [--json PATH]

The model is synthetic (tests/browser/model_server.py): >= 200 MB in >= 8 shards of random bytes,
served on 127.0.0.1 with a config, tokenizer, tensor manifest and library. web-llm only fetches
weights inside a load, which needs a compiled model and a GPU, so its strategy is reproduced here as
its loader does it: config, library and tokenizer with ``cache.add``, then 4 parallel loops over the
shard list, each shard a whole-file ``cache.add`` into "webllm/model".

Prints, for each strategy: download time (median of runs, each in a fresh browser context, the
strategies alternating), and the bytes the server sent again
after an interruption at 50 % of the model (cancel, then download again). "ours, no md5sum" is our
download of a model of the same sizes whose manifest gives no checksums (nothing to hash): web-llm
checks none, so that is the like-for-like transfer figure; "ours" checks every shard's md5sum.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import build  # noqa: E402
from bench._report import environment, print_environment, write_json  # noqa: E402
from tests.browser.conftest import CHROMIUM, QUIET_FLAGS, PagePython  # noqa: E402
from tests.browser.model_server import ModelServer, SyntheticModel  # noqa: E402

# web-llm's strategy (see its ArtifactCache.addToCache and fetchTensorCacheInternal), cancellable.
BASELINE = """async ([base, lib]) => {
  window.baselineAbort = new AbortController();
  const signal = window.baselineAbort.signal;
  const add = async (scope, url) => {
    const cache = await caches.open(scope);
    if (await cache.match(url) === undefined) await cache.add(new Request(url, {signal}));
  };
  const t0 = performance.now();
  try {
    await add('webllm/config', base + 'mlc-chat-config.json');
    await add('webllm/wasm', lib);
    await add('webllm/model', base + 'tokenizer.json');
    await add('webllm/model', base + 'tensor-cache.json');
    const cache = await caches.open('webllm/model');
    const list = await (await cache.match(base + 'tensor-cache.json')).json();
    const urls = list.records.map((r) => base + r.dataPath);
    let next = 0;
    const loop = async () => { while (next < urls.length) await add('webllm/model', urls[next++]); };
    await Promise.all([loop(), loop(), loop(), loop()]);
  } catch (e) {
    if (e.name === 'AbortError') return -1;
    throw e;
  }
  return performance.now() - t0;
}"""

OURS_SETUP = """
import asyncio, json, time
from app.models.catalog import Catalog
from app.models.manager import ModelManager
from app.backends.webllm import WebLLMBackend
catalog = await Catalog.load(extra=[json.loads({record!r})])
manager = ModelManager(catalog, WebLLMBackend(app_config=catalog.app_config()))
if {segment} is not None:
    manager.segment_bytes = {segment}
"""


def median(values):
    return statistics.median(values) if values else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shards", type=int, default=10)
    parser.add_argument("--shard-mib", type=int, default=24)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--short", action="store_true", help="a quick check that it runs (CI): 2 x 1 MiB, 1 run")
    parser.add_argument("--json", help="also write the figures to this file (python3 build.py bench)")
    parser.add_argument("--no-md5", action="store_true", help="shard records without md5sum (nothing to verify)")
    parser.add_argument("--segment-kib", type=int, help="our Range segment size (default: the app's own)")
    args = parser.parse_args()
    if args.short:
        args.shards, args.shard_mib, args.runs = 2, 1, 1
    elif args.runs < 5:
        parser.error("use at least 5 runs")
    from playwright.sync_api import sync_playwright

    segment = None if args.segment_kib is None else args.segment_kib << 10
    model = SyntheticModel("bench-model", shards=args.shards, shard_bytes=args.shard_mib << 20, seed=7, md5=not args.no_md5)
    # The same sizes without md5sum in the manifest: our download with nothing to hash.
    plain = SyntheticModel("bench-plain", shards=args.shards, shard_bytes=args.shard_mib << 20, seed=8, md5=False)
    models = ModelServer(model, plain)
    record = models.record(model)
    plain_record = models.record(plain)
    base = models.url(model.base_path)
    total = model.total_bytes
    dist = build.build()
    site = build.make_server(dist)
    build.start_in_thread(site)
    origin = f"http://127.0.0.1:{site.server_address[1]}"
    print(f"model: {total / 1e6:.1f} MB in {model.shards} shards; {args.runs} runs per strategy", flush=True)

    times: dict[str, list[float]] = {"ours": [], "ours, no md5sum": [], "web-llm strategy": []}
    refetched: dict[str, int] = {}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=QUIET_FLAGS)

        def fresh_page():
            context = browser.new_context()
            page = context.new_page()
            page.goto(origin + "/")
            # Timed from a settled page: the chat mounts after "ready", and either side timed while
            # it does would pay for that work.
            page.wait_for_selector("#chat[data-state=ready]", timeout=60_000)
            return context, page

        def ours(page, record=record):
            py = PagePython(page)
            py(OURS_SETUP.format(record=json.dumps(record), segment=segment))
            return py(f"t0 = time.perf_counter(); await manager.download({record['model_id']!r}); "
                      "(time.perf_counter() - t0) * 1000")

        def baseline(page):
            return page.evaluate(BASELINE, [base, record["model_lib"]])

        for run in range(args.runs):
            sides = (("ours", ours, total), ("web-llm strategy", baseline, total),
                     ("ours, no md5sum", lambda page: ours(page, plain_record), plain.total_bytes))
            for name, strategy, size in (sides if run % 2 == 0 else sides[::-1]):
                context, page = fresh_page()
                models.reset()
                times[name].append(strategy(page))
                assert sum(models.sent.values()) == size, (name, sum(models.sent.values()), size)
                context.close()

        # Interruption at 50 %: cancel when the server has sent half the model, then download again.
        def interrupted(name, start, cancel, finish):
            context, page = fresh_page()
            models.reset()
            start(page)
            while sum(models.sent.values()) < total // 2:
                time.sleep(0.005)  # polling the server's byte count; the condition is the 50 % mark
            cancel(page)
            finish(page)
            refetched[name] = sum(models.sent.values()) - total
            context.close()

        def ours_start(page):
            py = PagePython(page)
            py(OURS_SETUP.format(record=json.dumps(record), segment=segment))
            py("task = asyncio.ensure_future(manager.download('bench-model'))")
            page.__py = py

        interrupted("ours", ours_start,
                    lambda page: page.__py("manager.cancel('bench-model'); await asyncio.gather(task, return_exceptions=True)"),
                    lambda page: page.__py("await manager.download('bench-model')"))
        interrupted("web-llm strategy",
                    lambda page: page.evaluate("(a) => { window.baselineRun = (" + BASELINE + ")(a); }", [base, record["model_lib"]]),
                    lambda page: page.evaluate("async () => { window.baselineAbort.abort(); await window.baselineRun; }"),
                    lambda page: page.evaluate(BASELINE, [base, record["model_lib"]]))
        version = browser.version
        browser.close()
    models.close()

    env = environment(dist, version)
    print_environment(env)
    print(f"\n{'strategy':<18} {'download ms (median)':>22} {'runs':>36} {'re-fetched after 50 % cut':>28}")
    for name in times:
        runs = ", ".join(f"{t:.0f}" for t in times[name])
        cut = f"{refetched[name] / 1e6:>24.1f} MB" if name in refetched else ""
        print(f"{name:<18} {median(times[name]):>22.0f} {runs:>36} {cut}")
    ratio = median(times["ours"]) / median(times["web-llm strategy"])
    ratio_plain = median(times["ours, no md5sum"]) / median(times["web-llm strategy"])
    print(f"\ntime ratio ours / web-llm strategy (medians): {ratio:.2f}  (below 1: ours is faster); "
          f"without md5sum to check: {ratio_plain:.2f}")
    print(f"re-fetched: ours {refetched['ours'] / 1e6:.1f} MB vs {refetched['web-llm strategy'] / 1e6:.1f} MB "
          f"({refetched['ours'] / total:.1%} vs {refetched['web-llm strategy'] / total:.1%} of the model)")
    write_json(args.json, dict(env, runs=args.runs, mb=total / 1e6, ratio=ratio, ratio_no_md5=ratio_plain,
                               ours_ms=median(times["ours"]), webllm_ms=median(times["web-llm strategy"]),
                               ours_no_md5_ms=median(times["ours, no md5sum"]),
                               refetched_ours_mb=refetched["ours"] / 1e6,
                               refetched_webllm_mb=refetched["web-llm strategy"] / 1e6))
    return 0


if __name__ == "__main__":
    sys.exit(main())
