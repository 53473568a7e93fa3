#!/usr/bin/env python3
"""The in-page model benchmark (app/benchmark.py) from a script: load time, time to first token,
prefill and decode tokens/s for each model, measured in the page and as web-llm reports them.

    python3 bench/model_bench.py [--models ID ...] [--delay-ms 0] [--short]

It runs what the page's "Benchmark" button runs (``session.benchmark``), in one Chromium page over
web-llm's real worker. This machine has no GPU that can run a compiled model (SwiftShader, no
shader-f16), so the models are the engine double's (tests/browser/double): the figures are the
app's and web-llm's own costs around a model that computes nothing, i.e. the ceiling our path
allows. With ``--delay-ms N`` the double takes N ms per decode step (a 1000/N tokens/s model), to
check that the page's figures track web-llm's.
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

QWEN3 = "Qwen3-Double-q4f32_1-MLC"

RUN = """
from app import session
from app.benchmark import PROMPTS, BenchPrompt
s = session.current
manager = await s.models()
for model_id in {models!r}:
    await manager.download(model_id)
prompts = [BenchPrompt(p.name, p.text + {suffix!r}, p.max_tokens) for p in PROMPTS][:{count}]
rows = []
for model_id in {models!r}:
    result = await s.benchmark(model_id, prompts=prompts)
    rows.append(result.to_record())
rows
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=[CHAT_MODEL, QWEN3])
    parser.add_argument("--delay-ms", type=int, default=0, help="the double's time per decode step")
    parser.add_argument("--short", action="store_true", help="one model, one prompt (a check that it runs)")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    models = args.models[:1] if args.short else args.models
    dist = build.build()
    config_file = Path(tempfile.mkdtemp(prefix="model-bench-")) / "chat-config.json"
    server = build.make_server(dist, overlay={**OVERLAY, "static/chat-config.json": config_file})
    build.start_in_thread(server)
    origin = f"http://127.0.0.1:{server.server_address[1]}"
    config_file.write_text(json.dumps({"model": models[0], "app_config": app_config(origin), "auto_title": False,
                                       "cloud": None}))
    suffix = f" [[delay={args.delay_ms}]]" if args.delay_ms else ""
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=QUIET_FLAGS + WEBGPU_FLAGS)
        page = browser.new_page()
        page.goto(origin + "/")
        page.wait_for_selector("#chat[data-state=ready]", timeout=120_000)
        rows = PagePython(page)(RUN.format(models=models, suffix=suffix, count=1 if args.short else 99),
                                timeout_ms=900_000)
        version = browser.version
        browser.close()
    server.shutdown()
    server.server_close()

    print_environment(environment(dist, version))
    print(f"device: {rows[0]['device']}; engine double, {args.delay_ms} ms per decode step")
    print(f"{'model':<36}{'prompt':<8}{'load s':>8}{'ttft ms':>9}{'prefill t/s':>13}{'(web-llm)':>11}"
          f"{'decode t/s':>12}{'(web-llm)':>11}")
    for row in rows:
        for p in row["prompts"]:
            print(f"{row['model']:<36}{p['name']:<8}{row['load_s']:>8.2f}{p['ttft_s'] * 1000:>9.1f}"
                  f"{p['prefill_tps']:>13.0f}{p['engine_prefill_tps'] or 0:>11.0f}"
                  f"{p['decode_tps'] or 0:>12.0f}{p['engine_decode_tps'] or 0:>11.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
