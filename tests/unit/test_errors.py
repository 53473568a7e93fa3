import pytest

from app import errors
from app.errors import (
    AppError,
    ContextWindowExceeded,
    DeviceLost,
    EngineError,
    EngineRejected,
    InvalidRequest,
    ModelFetchFailed,
    ModelNotFound,
    ModelNotLoaded,
    OutputParseError,
    QuotaExceeded,
    ShaderF16Unsupported,
    ToolLoopLimit,
    UsageError,
    WebGPUUnavailable,
    from_engine_message,
)

# Error strings as they cross from web-llm's worker ("<name>: <message>").
CASES = [
    ("TypeError: Failed to execute 'add' on 'Cache': Request failed", ModelFetchFailed,
     "Failed to execute 'add' on 'Cache'"),
    ("ContextWindowSizeExceededError: Prompt tokens exceed context window size: number of prompt tokens: "
     "5000; context window size: 4096; consider shortening the prompt", ContextWindowExceeded,
     "Prompt tokens exceed context window size"),
    ("ModelNotFoundError: Cannot find model record in appConfig for X. Please check if the model ID is "
     "correct and included in the model_list configuration.", ModelNotFound,
     "Cannot find model record in appConfig for X"),
    ("ShaderF16SupportError: This model requires WebGPU extension shader-f16, which is not enabled in this "
     "browser. You can try to launch Chrome Canary in command line with flag \"--enable-dawn-features=allow_"
     "unsafe_apis\".", ShaderF16Unsupported, "This model requires WebGPU extension shader-f16"),
    ("DeviceLostError: The WebGPU device was lost while loading the model. This issue often occurs due to "
     "running out of memory (OOM).", DeviceLost, "The WebGPU device was lost"),
    ("QuotaExceededError: The quota has been exceeded.", QuotaExceeded, "The quota has been exceeded."),
    ("TypeError: Failed to fetch", ModelFetchFailed, "Failed to fetch"),
    ("WorkerEngineModelNotLoadedError: WebWorkerMLCEngine is not loaded with a model. Did you call "
     "`engine.reload()`?", ModelNotLoaded, "WebWorkerMLCEngine is not loaded with a model"),
    ("ModelNotLoadedError: Model not loaded before trying to complete ChatCompletionRequest.", ModelNotLoaded,
     "Model not loaded"),
    ("RangeError: Make sure 0 < top_p <= 1.", EngineRejected, "Make sure 0 < top_p <= 1."),
    ("Uncaught (in promise) AbortError: The user aborted a request.", errors.Aborted,
     "The user aborted a request."),
    ("WebGPUNotAvailableError: WebGPU is not supported in your current environment", WebGPUUnavailable,
     "WebGPU is not supported"),
    ("Something nobody expected", EngineError, "Something nobody expected"),
]


@pytest.mark.parametrize("text, cls, shown", CASES)
def test_engine_message_becomes_its_class_and_keeps_the_original(text, cls, shown):
    err = from_engine_message(text)
    assert type(err) is cls
    assert str(err).startswith(shown)
    assert err.original == text


def test_fetch_failures_in_other_browsers_are_fetch_failures():
    for text in ["TypeError: NetworkError when attempting to fetch resource.", "TypeError: Load failed"]:
        assert isinstance(from_engine_message(text), ModelFetchFailed)


def test_a_name_passed_separately_wins():
    err = from_engine_message("lost it", name="DeviceLostError")
    assert isinstance(err, DeviceLost) and str(err) == "lost it"


def test_web_llm_validation_errors_are_rejections_even_when_the_text_looks_like_something_else():
    assert type(from_engine_message("ConfigValueError: abort must be a boolean")) is EngineRejected


def test_webgpu_unavailable_says_no_adapter():
    assert from_engine_message("WebGPUNotFoundError: Cannot find adapter").reason == "no-adapter"


@pytest.mark.parametrize("cls", [c for c in vars(errors).values()
                                 if isinstance(c, type) and issubclass(c, Exception)])
def test_every_error_is_an_app_error(cls):
    assert issubclass(cls, AppError)


def test_usage_errors_are_value_errors_and_apart_from_engine_errors():
    assert issubclass(InvalidRequest, UsageError) and issubclass(InvalidRequest, ValueError)
    assert not issubclass(InvalidRequest, EngineError)
    assert InvalidRequest("temperature: too hot", param="temperature").param == "temperature"


def test_output_parse_error_keeps_the_raw_answer():
    err = OutputParseError("not JSON", text='{"a": ')
    assert isinstance(err, EngineError) and err.text == '{"a": '


def test_tool_loop_limit_carries_the_conversation():
    err = ToolLoopLimit("too many", messages=[{"role": "user", "content": "q"}], steps=3, calls=[])
    assert err.steps == 3 and err.messages[0]["content"] == "q" and not isinstance(err, EngineError)


def test_reload_cancelled_by_unload_is_aborted():
    assert isinstance(from_engine_message("Engine.unload() is called."), errors.Aborted)


def test_tool_call_output_errors_are_rejections():
    err = from_engine_message("ToolCallOutputParseError: Internal error: error encountered when parsing outputMessage")
    assert isinstance(err, EngineRejected)
