"""The Python panel's runner under CPython, over the real client and web-llm backend with the fake
engine API: output as it is printed, values, tracebacks of the user's lines, Stop that frees the engine."""

import asyncio

import pytest

from app.backends.webllm import WebLLMBackend
from app.client import Client
from app.errors import UsageError
from app.playground import FILENAME, Runner, compile_cell
from app.playground_examples import EXAMPLES
from tests.unit.conftest import run
from tests.unit.fakes import LLAMA, FakeEngineApi, within


async def make_runner():
    api = FakeEngineApi()
    backend = WebLLMBackend(engine_api=api)
    await backend.load(LLAMA)
    client = Client(backend)
    shown: list[tuple[str, str]] = []
    asked: list[set[str]] = []
    loaded: list[tuple[str, ...]] = []

    async def provide(names):
        asked.append(set(names))
        return {n: v for n, v in {"client": client, "models": "the manager"}.items() if n in names}

    async def load_packages(*names):
        loaded.append(names)

    runner = Runner(provide=provide, emit=lambda kind, text: shown.append((kind, text)), load_packages=load_packages)
    return runner, shown, asked, loaded, api


def test_printed_text_arrives_as_printed_and_the_last_value_is_shown():
    async def scenario():
        runner, shown, asked, loaded, _ = await make_runner()
        status = await runner.run("import asyncio\nfor i in range(3):\n    print(i, end=' ')\n"
                                  "    await asyncio.sleep(0)\n{'sum': 1 + 2}")
        again = await runner.run("_['sum'] * 2")  # the namespace (and `_`) live on
        return status, again, shown, asked, loaded

    status, again, shown, asked, loaded = run(within(scenario()))
    assert status == again == "done"
    assert shown == [("out", "0"), ("out", " "), ("out", "1"), ("out", " "), ("out", "2"), ("out", " "),
                     ("result", "{'sum': 3}"), ("result", "6")]
    assert asked == [] and loaded == []  # nothing of the session was asked for: no model loads


def test_an_exception_shows_the_users_lines_only():
    async def scenario():
        runner, shown, *_ = await make_runner()
        status = await runner.run("def f(x):\n    return 1 / x\n\nf(0)")
        bad = await runner.run("print('never'\n")
        return status, bad, shown

    status, bad, shown = run(within(scenario()))
    assert (status, bad) == ("error", "error")
    trace = shown[0][1]
    assert shown[0][0] == "error" and trace.startswith("Traceback (most recent call last):")
    assert f'File "{FILENAME}", line 4' in trace and "return 1 / x" in trace and "ZeroDivisionError" in trace
    assert "playground.py" not in trace  # the runner's own frames are left out
    assert shown[1][0] == "error" and "SyntaxError" in shown[1][1] and not any(k == "out" for k, _ in shown)


def test_the_client_is_provided_when_used_and_streams_print_as_they_come():
    async def scenario():
        runner, shown, asked, *_ = await make_runner()
        status = await runner.run(
            "stream = await client.chat.completions.create(messages=[{'role': 'user', 'content': 'one two'}],"
            " stream=True)\nasync for chunk in stream:\n    if chunk.choices:\n"
            "        print(chunk.choices[0].delta.content or '', end='')")
        return status, shown, asked

    status, shown, asked = run(within(scenario()))
    assert status == "done" and asked == [{"client"}]
    assert "".join(t for k, t in shown if k == "out") == "Echo: one two"
    assert len([k for k, _ in shown if k == "out"]) >= 3  # token by token


def test_stop_cancels_the_run_and_closes_its_stream_so_the_engine_is_free():
    async def scenario():
        runner, shown, _, _, api = await make_runner()
        code = ("stream = await client.chat.completions.create(messages=[{'role': 'user', 'content': "
                "' '.join(['w'] * 500)}], stream=True)\nasync for chunk in stream:\n    print('.', end='')")
        task = asyncio.ensure_future(runner.run(code))
        while len([k for k, _ in shown if k == "out"]) < 3:  # mid-answer
            await asyncio.sleep(0)
        assert runner.running and runner.stop()
        status = await task
        # The engine serves the next request at once: the stopped stream did not keep its turn.
        after = await runner.run("(await client.chat.completions.create(messages=[{'role': 'user', "
                                 "'content': 'next'}])).choices[0].message.content")
        return status, after, shown, runner

    status, after, shown, runner = run(within(scenario()))
    assert status == "stopped" and ("info", "Stopped.") in shown
    assert after == "done" and shown[-1] == ("result", "'Echo: next'")
    assert not runner.stop()  # nothing running


def test_one_run_at_a_time_and_lazy_packages_load_first():
    async def scenario():
        runner, shown, asked, loaded, _ = await make_runner()
        slow = asyncio.ensure_future(runner.run("import asyncio\nawait asyncio.sleep(30)"))
        while not runner.running:
            await asyncio.sleep(0)
        with pytest.raises(UsageError):
            await runner.run("1")
        runner.stop()
        await slow
        status = await runner.run("import json\nimport pydantic.fields\n1")
        return status, loaded, shown

    status, loaded, shown = run(within(scenario()))
    assert status == "done" and loaded == [("pydantic",)]


def test_every_example_compiles_and_uses_the_session_only_through_its_names():
    assert len(EXAMPLES) >= 5
    for title, source in EXAMPLES.items():
        _, used = compile_cell(source)
        assert "client" in used or "models" in used, title


def test_message_helpers_and_links_and_script_names():
    from app.errors import InvalidRequest
    from app.ui.playground import check_name, decode_link, encode_link

    async def scenario():
        runner, shown, *_ = await make_runner()
        await runner.run("[system('be brief'), user('hi'), assistant('hello')]")
        return shown

    assert run(scenario())[-1] == ("result", "[{'role': 'system', 'content': 'be brief'}, {'role': 'user', "
                                   "'content': 'hi'}, {'role': 'assistant', 'content': 'hello'}]")
    code = "print('héllo')\n# ünïcode & symbols +/=?#"
    assert decode_link(encode_link(code)) == code and "=" not in encode_link(code)[3:]
    assert decode_link("py=%%%") is None and decode_link("other=1") is None
    assert check_name(" demo.py ") == "demo"
    for bad in ("", "a/b", "x" * 81, "tab\there"):
        with pytest.raises(InvalidRequest):
            check_name(bad)
