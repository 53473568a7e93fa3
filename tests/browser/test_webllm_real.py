"""The real web-llm (no test double) in Chromium: what a user sees when a model cannot run here."""

import pytest

from tests.browser.conftest import QUIET_FLAGS, RECORD_WORKER_MESSAGES, PagePython, PyError, open_app


def _app(page, site):
    page.add_init_script(RECORD_WORKER_MESSAGES)
    w = open_app(page, site)
    return w, PagePython(page)


def _load_error(py, model_id: str) -> PyError:
    with pytest.raises(PyError) as info:
        py(f"""
from app.backends.webllm import WebLLMBackend
backend = WebLLMBackend()
await backend.load({model_id!r})
""")
    return info.value


def test_prebuilt_model_unreachable_is_a_typed_error_not_a_hang(page, site):
    w, py = _app(page, site)
    error = _load_error(py, "Qwen2.5-0.5B-Instruct-q4f32_1-MLC")
    assert error.type == "ModelFetchFailed"
    assert "EngineError" in error.mro and "AppError" in error.mro
    assert "Failed to fetch" in error.original  # web-llm's own words are kept
    # The only outside request was web-llm's attempt at the model's config, blocked by the test.
    assert w.foreign and all("huggingface.co" in u for u in w.foreign)
    assert py("backend.loaded") is None


def test_f16_model_on_gpu_without_shader_f16_fails_before_downloading(page, site):
    w, py = _app(page, site)
    error = _load_error(py, "Qwen2.5-0.5B-Instruct-q4f16_1-MLC")
    assert error.type == "ShaderF16Unsupported"
    assert "FeatureUnsupported" in error.mro
    assert "q4f32" in error.message
    assert "reload" not in page.evaluate("window.__toWorker")
    assert w.foreign == []


def test_unknown_model_id_is_model_not_found(page, site):
    w, py = _app(page, site)
    error = _load_error(py, "No-Such-Model-q4f32_1-MLC")
    assert error.type == "ModelNotFound"
    assert "reload" not in page.evaluate("window.__toWorker")
    assert w.foreign == []


def test_without_webgpu_loading_says_so(launch_chromium, site):
    page = launch_chromium(QUIET_FLAGS).new_page()
    w, py = _app(page, site)
    error = _load_error(py, "Qwen2.5-0.5B-Instruct-q4f32_1-MLC")
    assert error.type == "WebGPUUnavailable"
    assert "--enable-unsafe-webgpu" in error.message
    assert w.foreign == []  # nothing was fetched for a model that cannot run


def test_bad_parameters_are_rejected_before_the_engine_is_touched(page, site):
    w, py = _app(page, site)
    with pytest.raises(PyError) as info:
        py("""
from app.client import Client
from app.backends.webllm import WebLLMBackend
client = Client(WebLLMBackend())
await client.chat.completions.create(messages=[{"role": "user", "content": "hi"}], temperature=7)
""")
    assert info.value.type == "InvalidRequest" and info.value.param == "temperature"
    assert page.evaluate("window.__toWorker") == []
    # web-llm was not even imported: a bad call costs nothing.
    assert not any("web-llm" in u for u in w.requests)
