"""How fast a model runs on this device, before a user commits gigabytes to it.

    result = await run_prompts(client, "Qwen2.5-0.5B-Instruct-q4f32_1-MLC", device="SwiftShader",
                               load_s=12.5)
    result.decode_tps, result.prefill_tps, result.ttft_ms

A fixed prompt set (a short and a long prompt), greedy, ``ignore_eos`` so every run decodes exactly
``max_tokens`` tokens, after one small warm-up request (shader compilation and first allocations are
the load's cost, not the model's speed). For each prompt two views of the same run:

- measured here, as a user feels it: time to first token (request sent -> first text), prefill
  tokens/s (prompt tokens / time to first token) and decode tokens/s (tokens after the first / time
  from the first text to the last token's chunk, text or not);
- web-llm's own (``usage.extra``: ``prefill_tokens_per_s``, ``decode_tokens_per_s``), inside the
  engine, without the worker's messages: an upper bound of the first.

Peak GPU memory is not exposed by browsers (WebGPU reports no allocation totals) and is left out
rather than guessed. Plain Python: the session (:meth:`app.session.Session.benchmark`) loads the
model and keeps the results per model and device; ``bench/model_bench.py`` runs it from a script.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from app.errors import InvalidRequest

_LONG_TEXT = " ".join(
    f"Section {i}: the harbour town kept its records in a stone archive, where each ship that came in "
    f"was written down with its cargo, its crew and the weather of the day it arrived."
    for i in range(1, 25))


@dataclass(frozen=True)
class BenchPrompt:
    name: str
    text: str
    max_tokens: int = 64


PROMPTS: tuple[BenchPrompt, ...] = (
    BenchPrompt("short", "Name three colours of the sea and say why each appears.", 64),
    BenchPrompt("long", f"{_LONG_TEXT}\n\nSummarise the archive described above in one paragraph.", 64),
)
WARM_UP = BenchPrompt("warm-up", "Say hello.", 4)


@dataclass(frozen=True)
class PromptFigures:
    """One prompt's run: tokens, time to first token, and prefill/decode rates (here and web-llm's)."""

    name: str
    prompt_tokens: int
    completion_tokens: int
    ttft_s: float
    prefill_tps: float
    decode_tps: float | None  # None with fewer than two tokens (no interval to time)
    engine_prefill_tps: float | None = None
    engine_decode_tps: float | None = None


@dataclass(frozen=True)
class BenchResult:
    model: str
    device: str
    load_s: float | None  # None: the model was not loaded by the benchmark
    prompts: tuple[PromptFigures, ...]
    at: float = 0.0

    @property
    def ttft_ms(self) -> float:
        """Time to first token of the shortest prompt, in ms (what a new chat feels like)."""
        return round(min(self.prompts, key=lambda p: p.prompt_tokens).ttft_s * 1000, 1)

    @property
    def prefill_tps(self) -> float:
        """Prefill rate of the longest prompt (short prompts are dominated by fixed costs)."""
        return round(max(self.prompts, key=lambda p: p.prompt_tokens).prefill_tps, 1)

    @property
    def decode_tps(self) -> float | None:
        rates = [p.decode_tps for p in self.prompts if p.decode_tps is not None]
        return round(statistics.median(rates), 1) if rates else None

    def row(self) -> dict[str, Any]:
        """The comparison table's row."""
        return {"model": self.model, "device": self.device, "load_s": self.load_s, "ttft_ms": self.ttft_ms,
                "prefill_tps": self.prefill_tps, "decode_tps": self.decode_tps}

    def to_record(self) -> dict[str, Any]:
        return {**asdict(self), "prompts": [asdict(p) for p in self.prompts]}

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> BenchResult:
        return cls(model=str(record["model"]), device=str(record["device"]),
                   load_s=None if record.get("load_s") is None else float(record["load_s"]),
                   prompts=tuple(PromptFigures(**p) for p in record["prompts"]), at=float(record.get("at") or 0))


def check_prompts(prompts: tuple[BenchPrompt, ...] | list[BenchPrompt]) -> tuple[BenchPrompt, ...]:
    prompts = tuple(prompts)
    if not prompts:
        raise InvalidRequest("a benchmark needs at least one prompt", param="prompts")
    for p in prompts:
        if not isinstance(p, BenchPrompt) or not p.text.strip():
            raise InvalidRequest("each benchmark prompt needs text", param="prompts")
        if not 2 <= p.max_tokens <= 4096:
            raise InvalidRequest("max_tokens of a benchmark prompt must be from 2 to 4096", param="max_tokens")
    return prompts


async def measure(client: Any, prompt: BenchPrompt, *, clock: Callable[[], float] = time.perf_counter
                  ) -> PromptFigures:
    """One greedy run of ``prompt`` that decodes exactly ``max_tokens`` tokens."""
    started = clock()
    first = last = None
    stream = await client.chat.completions.create(
        messages=[{"role": "user", "content": prompt.text}], stream=True, temperature=0, ignore_eos=True,
        max_tokens=prompt.max_tokens, stream_options={"include_usage": True})
    async with stream:
        async for chunk in stream:
            if not chunk.choices:
                continue  # the usage chunk, after the last token
            now = clock()
            if first is None and any(c.delta.content for c in chunk.choices):
                first = now
            last = now  # a token that decodes to no text (ignore_eos past the end) still counts
    usage = stream.accumulator.usage
    if usage is None or first is None:
        raise InvalidRequest(f"the model wrote nothing for the {prompt.name!r} prompt", param="prompts")
    ttft = max(first - started, 1e-9)
    decode = (usage.completion_tokens - 1) / (last - first) if usage.completion_tokens > 1 and last > first else None
    extra = usage.extra or {}

    def rate(key: str) -> float | None:
        value = extra.get(key)
        return round(float(value), 1) if isinstance(value, (int, float)) else None

    return PromptFigures(prompt.name, usage.prompt_tokens, usage.completion_tokens, round(ttft, 4),
                         round(usage.prompt_tokens / ttft, 1), None if decode is None else round(decode, 1),
                         rate("prefill_tokens_per_s"), rate("decode_tokens_per_s"))


async def run_prompts(client: Any, model: str, *, device: str, load_s: float | None = None,
                      prompts: tuple[BenchPrompt, ...] | list[BenchPrompt] = PROMPTS, warm_up: bool = True,
                      clock: Callable[[], float] = time.perf_counter, wall: Callable[[], float] = time.time
                      ) -> BenchResult:
    """Run the prompt set on ``client``'s loaded model (after a warm-up request)."""
    prompts = check_prompts(prompts)
    if warm_up:
        await measure(client, WARM_UP, clock=clock)
    figures = [await measure(client, p, clock=clock) for p in prompts]
    return BenchResult(model, device, None if load_s is None else round(load_s, 3), tuple(figures), wall())


def table(results: list[BenchResult]) -> list[dict[str, Any]]:
    """Rows for comparing models on one device, fastest decode first."""
    return [r.row() for r in sorted(results, key=lambda r: -(r.decode_tps or 0))]
