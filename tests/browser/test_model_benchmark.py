"""The model benchmark in real Chromium over web-llm's real worker path (the engine double decodes
in a fixed time per token): it needs a downloaded model, measures what web-llm measures, and keeps
its result per model and device for the next visit."""

from __future__ import annotations

import pytest

from tests.browser.conftest import READY_TIMEOUT_MS, PagePython
from tests.browser.double import CHAT_MODEL, TOOLS_MODEL
from tests.browser.test_ui_models import open_models, pick
from tests.browser.ui_helpers import close_sheet, open_chat, shot, ui_site


@pytest.fixture(scope="module")
def bench_site(serve, tmp_path_factory):
    return ui_site(serve, tmp_path_factory.mktemp("bench"))


def test_a_benchmark_agrees_with_web_llm_and_is_kept_for_the_next_visit(page, bench_site):
    open_chat(page, bench_site)
    py = PagePython(page)
    # Not downloaded yet: refused before anything loads.
    refused = py(f"""
from app import session
try:
    await session.current.benchmark({TOOLS_MODEL!r})
except Exception as exc:
    said = f"{{type(exc).__name__}}: {{exc}}"
said
""")
    assert refused.startswith("UsageError") and "download it first" in refused
    result = py(f"""
from app import session
from app.benchmark import PROMPTS, BenchPrompt
s = session.current
await (await s.models()).download({CHAT_MODEL!r})
prompts = [BenchPrompt(p.name, p.text + " [[delay=30]]", 24) for p in PROMPTS]
(await s.benchmark({CHAT_MODEL!r}, prompts=prompts)).to_record()
""", timeout_ms=120_000)
    assert result["model"] == CHAT_MODEL and "swiftshader" in result["device"].lower()
    assert result["load_s"] is not None and result["load_s"] > 0
    short, long = result["prompts"]
    assert long["prompt_tokens"] > 5 * short["prompt_tokens"]
    for figures in (short, long):
        assert figures["completion_tokens"] == 24  # ignore_eos: exactly max_tokens
        # The double takes 30 ms per step: web-llm's rate and the page's both say ~33 tokens/s; the
        # page's includes the worker's messages, so it is a little lower, never higher.
        assert 20 < figures["engine_decode_tps"] < 34
        assert 0.6 * figures["engine_decode_tps"] < figures["decode_tps"] <= 1.1 * figures["engine_decode_tps"]
        assert figures["prefill_tps"] > 0 and figures["ttft_s"] > 0

    page.reload()
    open_chat(page, bench_site)
    kept = PagePython(page)("""
from app import session
[(device, model) for device, model in await session.current.load_benchmarks()]
""")
    assert kept == [[result["device"], CHAT_MODEL]]


def test_benchmark_from_the_models_sheet_fills_the_table_and_the_chat_goes_on(page, bench_site):
    open_chat(page, bench_site)
    open_models(page)
    pick(page, TOOLS_MODEL)
    assert page.is_hidden("#model-benchmark")  # only a downloaded model can be measured
    page.click("#model-download")
    page.locator("#model-detail[data-state=downloaded]").wait_for(timeout=READY_TIMEOUT_MS)
    page.click("#model-benchmark")
    page.locator("#bench-said", has_text="tokens/s to write").wait_for(timeout=READY_TIMEOUT_MS)
    assert page.inner_text("#bench-said").startswith(f"{TOOLS_MODEL}: ")
    row = page.locator(f"#bench-rows tr[data-id='{TOOLS_MODEL}']")
    cells = row.locator("td").all_inner_texts()
    assert cells[0].endswith(" s") and cells[1].endswith(" ms") and cells[2].endswith(" t/s")
    assert float(cells[3].split()[0]) > 0  # decode rate
    assert row.locator("meter").get_attribute("value") == row.locator("meter").get_attribute("max")  # the only row: fastest
    page.locator("#benchmarks").scroll_into_view_if_needed()
    shot(page, "benchmark-table")
    # The chat's own model comes back with the next message.
    close_sheet(page, "models")
    page.fill("#prompt", "still there?")
    page.press("#prompt", "Enter")
    page.locator("#messages .msg-assistant[data-status=done]").wait_for(timeout=READY_TIMEOUT_MS)
    assert CHAT_MODEL in page.inner_text("#messages .msg-assistant .meta")
