"""Each bridge and its unit-test fake answer the same small scenario with the same shapes.

One scenario per bridge is Python source, run twice: in Chromium against the real module of
``app.ffi`` (through the page's interpreter) and under CPython against the fake the unit tests use.
Where both sides are deterministic the values must be equal; elsewhere the shapes (dict keys, value
types) must be. tests/unit/test_bridge_contract.py checks the signatures.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.browser.conftest import PagePython, open_app
from tests.browser.double import CHAT_MODEL, CHROME_AI, OVERLAY, app_config
from tests.unit.backends.test_chrome_ai import FakePromptApi
from tests.unit.backends.test_openai_compat import FakeHttp
from tests.unit.conftest import run
from tests.unit.fakes import FakeChannels, FakeEngineApi, FakeImages, make_png
from tests.unit.models.fake_store import FakeStoreApi


def shape(value: Any) -> Any:
    """Types instead of values: dicts keep their keys, lists their items' shapes."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in sorted(value.items())}
    if isinstance(value, list):
        return [shape(v) for v in value]
    return type(value).__name__


def both(page, scenario: str, module: str, fake: Any, *args: Any) -> tuple[Any, Any]:
    """``scenario(api, *args)`` with the real ``app.ffi.<module>`` in the page and with ``fake`` here."""
    real = PagePython(page)(f"{scenario}\nfrom app.ffi import {module} as api\n"
                            f"await scenario(api, *json.loads({json.dumps(json.dumps(args))}))")
    namespace: dict[str, Any] = {}
    exec(scenario, namespace)  # noqa: S102 (the scenario is this file's own source)
    return real, json.loads(json.dumps(run(namespace["scenario"](fake, *args))))


SCENARIO_HEAD = "import json\n"

KEY_VALUE = SCENARIO_HEAD + '''
async def scenario(api):
    await api.kv_put("settings", "contract", {"n": 1, "none": None, "list": [1.5, "x"]})
    got = await api.kv_get("settings", "contract")
    listed = await api.kv_items("settings")
    await api.kv_delete("settings", "contract")
    await api.kv_write("settings", {"b1": [1], "b2": {"x": None}}, [])
    await api.kv_write("settings", {"b3": "three"}, ["b1", "absent"])
    batch = {k: v for k, v in (await api.kv_items("settings")).items() if k.startswith("b")}
    await api.kv_write("settings", {}, ["b2", "b3"])
    return {"got": got, "listed": listed, "after": await api.kv_get("settings", "contract"), "batch": batch,
            "batch_after": sorted(k for k in await api.kv_items("settings") if k.startswith("b"))}
'''

MODEL_STORE = SCENARIO_HEAD + '''
from app.models.layout import StoreLayout
layout = StoreLayout()

async def scenario(api, url):
    store = layout.store("cache", "webllm/config")
    entry = layout.entry("cache", url, "json")
    await api.store_put_text(store, entry, '{"model": "x"}')
    listed = await api.store_list(store)
    estimate, staged = await api.storage_estimate(), await api.staging_list()
    await api.store_delete(store, [entry])
    return {"listed": listed, "estimate": estimate, "staged": staged, "after": await api.store_list(store)}
'''


def test_storage_bridge(page, site):
    watch = open_app(page, site)
    real, fake = both(page, KEY_VALUE, "storage", FakeStoreApi({}))
    assert real == fake == {"got": {"n": 1, "none": None, "list": [1.5, "x"]},
                            "listed": {"contract": {"n": 1, "none": None, "list": [1.5, "x"]}}, "after": None,
                            "batch": {"b2": {"x": None}, "b3": "three"}, "batch_after": []}
    real, fake = both(page, MODEL_STORE, "storage", FakeStoreApi({}), site.origin + "/m/mlc-chat-config.json")
    assert real["listed"] == fake["listed"] == [{"key": site.origin + "/m/mlc-chat-config.json", "bytes": 14}]
    assert real["after"] == fake["after"] == [] and real["staged"] == fake["staged"] == {}
    assert shape(real["estimate"]) == shape(fake["estimate"]) == {"persisted": "bool", "quota": "int", "usage": "int"}
    watch.assert_clean()


HTTP = SCENARIO_HEAD + '''
async def scenario(api, url):
    stream = api.HttpStream(url, method="GET", headers={"Accept": "text/event-stream"}, body=None, sse=True)
    items = [await stream.__anext__(), await stream.__anext__()]
    await stream.aclose()
    return {"items": items}
'''


@pytest.fixture
def sse_site(serve, tmp_path_factory):
    events = tmp_path_factory.mktemp("sse") / "events.txt"
    events.write_text('data: {"n": 1}\n\n: a comment\ndata: {"n": 2}\n\ndata: [DONE]\n\n')
    return serve("/", overlay={"contract/events": events})


def test_http_bridge(page, sse_site):
    watch = open_app(page, sse_site)
    real, fake = both(page, HTTP, "http", FakeHttp({"n": 1}), sse_site.url + "contract/events")
    assert real == {"items": ['{"n": 1}', '{"n": 2}']}
    assert shape(real) == shape(fake) == {"items": ["str", "str"]}
    watch.assert_clean()


PROMPT_API = SCENARIO_HEAD + '''
async def scenario(api):
    text = [{"type": "text", "languages": ["en"]}]
    options = {"expectedInputs": text, "expectedOutputs": text}
    prompt = [{"role": "user", "content": "say hello"}]
    session = await api.prompt_api_create(options, None)
    out = {"present": api.prompt_api_present(), "state": await api.prompt_api_availability(options),
           "usage": session.usage(), "measure": await session.measure(prompt),
           "answer": await session.prompt(prompt)}
    stream = api.PromptStream(session, prompt)
    out["pieces"] = [p async for p in stream]
    session.destroy()
    return out
'''


def test_prompt_api_bridge(page, site):
    page.add_init_script(path=str(CHROME_AI))
    watch = open_app(page, site)
    real, fake = both(page, PROMPT_API, "prompt_api", FakePromptApi())
    assert real["present"] is fake["present"] is True and real["state"] == fake["state"] == "available"
    for side in (real, fake):  # a stream of one piece or several: compare the first
        side["pieces"] = side["pieces"][:1]
    assert shape(real) == shape(fake)
    watch.assert_clean()


ENGINE = SCENARIO_HEAD + '''
async def scenario(api, config, model):
    exports = await api.webllm_exports("static/vendor/web-llm/index.js")
    handle = await api.create_engine("static/vendor/web-llm/index.js", "static/webllm-worker.js", config)
    try:
        await api.engine_reload(handle, model)
        messages = [{"role": "user", "content": "hello there"}]
        reply = await api.engine_chat(handle, {"messages": messages, "max_tokens": 8})
        chunks = [c async for c in api.ChunkIterator(handle, {"messages": messages, "stream": True, "max_tokens": 8})]
        await api.engine_unload(handle)
    finally:
        handle.close()
    return {"exports": sorted(exports), "reply": sorted(reply), "choice": sorted(reply["choices"][0]),
            "message": reply["choices"][0]["message"], "usage": sorted(reply["usage"]),
            "chunk": sorted(chunks[0]), "delta": sorted(chunks[0]["choices"][0]),
            "last": chunks[-1]["choices"][0]["finish_reason"] if chunks[-1]["choices"] else None}
'''


@pytest.fixture
def double_site(serve):
    return serve("/", overlay=OVERLAY)


def test_engine_bridge(page, double_site):
    watch = open_app(page, double_site)
    config = app_config(double_site.origin)
    fake_api = FakeEngineApi(handler=lambda request: "Hello there", model_list=config["model_list"])
    real, fake = both(page, ENGINE, "engine", fake_api, config, CHAT_MODEL)
    assert real["exports"] == fake["exports"] == ["functionCallingModelIds", "modelVersion", "prebuiltAppConfig",
                                                  "version"]
    for key in ("reply", "choice", "usage", "chunk", "delta"):
        assert real[key] == fake[key], key
    assert shape(real["message"]) == shape(fake["message"])
    watch.assert_clean()


def test_dom_and_page_bridges_keep_their_documented_shapes(page, site):
    # No unit test fakes these two yet; this pins the shapes a fake must produce.
    watch = open_app(page, site)
    py = PagePython(page)
    real = py("""
from app.ffi import dom, page
seen = []
button = dom.element("button", "contract", attrs={"data-action": "contract", "id": "contract-button"})
dom.append(dom.node("main"), button)
stop = dom.listen(button, "click", lambda facts: seen.append(facts))
{"stop": callable(stop), "query": page.page_query(), "framed": page.parent_origin_matches("http://example.com"),
 "online": page.is_online()}
""")
    assert real == {"stop": True, "query": {}, "framed": False, "online": True}
    page.click("#contract-button")
    facts = py("seen[0]")
    assert shape(facts) == {"action": "str", "alt": "bool", "composing": "bool", "ctrl": "bool", "id": "NoneType",
                            "key": "NoneType", "meta": "bool", "prevented": "bool", "shift": "bool", "type": "str",
                            "value": "str"}
    assert facts["prevented"] is False  # no listener nearer the button handled the click
    assert (facts["type"], facts["action"]) == ("click", "contract")
    watch.assert_clean()


CHANNEL = SCENARIO_HEAD + '''
import asyncio

async def scenario(api):
    got = {"one": [], "two": [], "other": []}
    post_one, close_one = api.open_channel("contract", got["one"].append)
    post_two, close_two = api.open_channel("contract", got["two"].append)
    _post, close_other = api.open_channel("another name", got["other"].append)
    post_one({"n": 1, "text": "é", "none": None})
    post_two({"n": 2})
    while not (got["one"] and got["two"]):
        await asyncio.sleep(0.01)
    close_two()
    post_one({"n": 3})   # no one left on this name: nobody gets it
    post_two({"n": 4})   # closed: does nothing
    close_one()
    close_other()
    return got
'''


def test_channel_bridge(page, site):
    watch = open_app(page, site)
    real, fake = both(page, CHANNEL, "channel", FakeChannels())
    assert real == fake == {"one": [{"n": 2}], "two": [{"n": 1, "text": "é", "none": None}], "other": []}
    watch.assert_clean()


IMAGES = SCENARIO_HEAD + '''
async def scenario(api, png, bmp):
    return {"resized": await api.prepare_image_url(png, "wide.png", 2),
            "kept": await api.prepare_image_url(png, "wide.png"),
            "bmp": await api.prepare_image_url(bmp, "old.bmp"),
            "broken": await api.prepare_image_url("data:image/png;base64,iVBORw0KGgo=", "broken.png")}
'''


def test_images_bridge(page, site):
    import base64

    open_app(page, site)
    png = "data:image/png;base64," + base64.b64encode(make_png(4, 2)).decode()
    real, fake = both(page, IMAGES, "images", FakeImages(), png, "data:image/bmp;base64,Qk0=")
    assert shape(real) == shape(fake)
    for key in ("resized", "kept"):  # the page re-encodes the pixels; size, type and name agree
        assert {k: v for k, v in real[key].items() if k != "url"} == {k: v for k, v in fake[key].items() if k != "url"}
        assert real[key]["url"].startswith("data:image/png;base64,")
    assert (real["resized"]["width"], real["resized"]["height"]) == (2, 1)
    assert (real["kept"]["width"], real["kept"]["height"]) == (4, 2)
    assert real["bmp"] == fake["bmp"] and "PNG, JPEG, WebP and GIF" in real["bmp"]["error"]
    assert real["broken"] == fake["broken"] and "could not be read as an image" in real["broken"]["error"]
