"""The in-page benchmark's arithmetic and requests: greedy, ignore_eos, exactly max_tokens, a warm-up
that is not counted, figures from the same run as web-llm's own, results kept per model and device."""

import pytest

from app.benchmark import PROMPTS, BenchPrompt, BenchResult, check_prompts, run_prompts, table
from app.client import Client
from app.errors import InvalidRequest
from app.ir import Usage
from tests.unit.conftest import run
from tests.unit.test_middleware import FakeBackend, chunk


class Ticks:
    """A clock that moves ``step`` s (10 ms) each time it is read."""

    def __init__(self, step=0.01):
        self.now, self.step = 0.0, step

    def __call__(self):
        self.now += self.step
        return self.now


def engine(prompt_tokens=100, tokens=4):
    usage = Usage(prompt_tokens, tokens, prompt_tokens + tokens,
                  extra={"prefill_tokens_per_s": 5000.0, "decode_tokens_per_s": 150.0})
    chunks = [chunk(f"t{i} ") for i in range(tokens - 1)] + [chunk("end", finish="length"), chunk(usage=usage)]
    return FakeBackend("webllm", chunks=tuple(chunks))


def test_each_prompt_is_run_greedy_to_exactly_max_tokens_after_an_uncounted_warm_up():
    backend = engine()
    result = run(run_prompts(Client(backend), "M", device="GPU X", load_s=1.23456, clock=Ticks(), wall=lambda: 99.0))
    sent = [request for kind, request in backend.calls]
    assert len(sent) == 1 + len(PROMPTS)  # the warm-up first
    for request, prompt in zip(sent[1:], PROMPTS):
        assert list(request.messages) == [{"role": "user", "content": prompt.text}]
        assert request.params["temperature"] == 0 and request.params["ignore_eos"] is True
        assert request.params["max_tokens"] == prompt.max_tokens
    assert [p.name for p in result.prompts] == ["short", "long"]
    figures = result.prompts[0]
    # Clock reads: request sent, then one per text chunk (4): first text 10 ms after sending,
    # the last 30 ms after the first.
    assert figures.ttft_s == pytest.approx(0.01) and figures.prefill_tps == pytest.approx(100 / 0.01)
    assert figures.decode_tps == pytest.approx(3 / 0.03)
    assert (figures.engine_prefill_tps, figures.engine_decode_tps) == (5000.0, 150.0)
    assert result.load_s == 1.235 and result.at == 99.0 and result.device == "GPU X"
    assert result.row() == {"model": "M", "device": "GPU X", "load_s": 1.235, "ttft_ms": 10.0,
                            "prefill_tps": 10000.0, "decode_tps": 100.0}
    assert BenchResult.from_record(result.to_record()) == result


def test_bad_prompt_sets_are_refused_before_anything_runs():
    with pytest.raises(InvalidRequest, match="at least one prompt"):
        check_prompts(())
    with pytest.raises(InvalidRequest, match="needs text"):
        check_prompts([BenchPrompt("x", "  ")])
    with pytest.raises(InvalidRequest, match="from 2 to 4096"):
        check_prompts([BenchPrompt("x", "hi", max_tokens=1)])


def test_the_table_puts_the_fastest_decoder_first():
    slow = run(run_prompts(Client(engine()), "slow", device="d", clock=Ticks(0.02), warm_up=False))
    fast = run(run_prompts(Client(engine()), "fast", device="d", clock=Ticks(0.005), warm_up=False))
    assert (slow.decode_tps, fast.decode_tps) == (50.0, 200.0)
    assert [r["model"] for r in table([slow, fast])] == ["fast", "slow"]
