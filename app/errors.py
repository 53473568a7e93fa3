"""Errors users can branch on.

    AppError                          base of everything this package raises on purpose
    +-- UsageError (ValueError)       the call itself is wrong; rejected before anything ran
    |   +-- InvalidRequest            a request field is unknown, mistyped or out of range (.param)
    |   +-- FileRejected              a file given to app.knowledge cannot be added (nothing was stored)
    |       +-- FileTooLarge          ... it is larger than the limit
    |       +-- UnsupportedFile       ... it is not text, Markdown, HTML, PDF or source code
    |       +-- NoTextInFile          ... it has no text (a PDF without a text layer, an empty file)
    +-- BrowserOnly                   a browser-only feature was used under CPython
    +-- EngineError                   the engine failed; .original keeps its message word for word
    |   +-- WebGPUUnavailable         no WebGPU adapter on this page (.reason)
    |   +-- FeatureUnsupported        the model needs a GPU feature this browser lacks
    |   |   +-- ShaderF16Unsupported  ... namely shader-f16
    |   |   +-- BuiltInModelUnavailable  the browser has no built-in model it can run here (Prompt API)
    |   +-- ModelNotFound             the model id is in no catalog the engine knows
    |   +-- ModelNotLoaded            the request names a model that is not loaded
    |   +-- ModelNotDownloaded        the model's files are not in the browser's cache (offline use)
    |   +-- ModelFetchFailed          fetching model files failed (.status: the HTTP status, or None)
    |   |   +-- ChecksumMismatch      a downloaded file is not the one the model's manifest describes
    |   +-- ContextWindowExceeded     the prompt does not fit the model's context window
    |   +-- DeviceLost                the GPU device was lost (often out of memory)
    |   +-- EngineCrashed             the engine's worker died (crashed, out of memory, terminated)
    |   +-- QuotaExceeded             the browser's storage quota is too small for the model files
    |   |   +-- InsufficientStorage   ... found before a download starts (.needed, .available, .evictable)
    |   +-- Aborted                   the request was stopped (stream.aclose(), a cancel handle)
    |   +-- EngineRejected            the engine refused the request (its own validation)
    |   +-- OutputParseError          the model's answer is not the JSON that was asked for (.text)
    |   +-- AuthenticationFailed      a cloud endpoint refused the API key (401/403)
    |   +-- RateLimited               a cloud endpoint said 429 (.retry_after seconds, or None)
    |   +-- ServerError               a cloud endpoint failed (5xx; .status)
    |   +-- BackendUnreachable        no answer from a cloud endpoint (network down, CORS, DNS), or in time
    |   |   +-- StreamStalled         a stream stopped yielding tokens mid-answer (what came is kept)
    |   +-- NoBackendAvailable        the router found no backend for the request (.attempts says why)
    |       +-- VisionUnavailable     ... the request has images and no backend that may serve it sees images
    +-- StorageClosed                 this tab closed its IndexedDB storage: a newer app version opened it
    +-- ToolLoopLimit                 run_tools() reached max_steps with the model still calling tools

Catch by class, never by message text: ``except ContextWindowExceeded: shorten()``.

web-llm runs in a Web Worker, where an error crosses as the string ``"<ErrorName>: <message>"``
(``Error.prototype.toString``). :func:`from_engine_message` turns such a string back into one of the
classes above, once, at the boundary (``app/ffi/``).
"""

from __future__ import annotations

import re


class AppError(Exception):
    """Base class of every error this package raises on purpose."""


class UsageError(AppError, ValueError):
    """The call or argument is invalid; it was rejected before anything ran."""


class FileRejected(UsageError):
    """A file given to app.knowledge cannot be added; nothing of it was stored."""


class FileTooLarge(FileRejected):
    """The file is larger than app.knowledge takes."""


class UnsupportedFile(FileRejected):
    """The file is not text, Markdown, HTML, PDF or source code."""


class NoTextInFile(FileRejected):
    """The file has no text to read (a PDF without a text layer, an empty file)."""


class InvalidRequest(UsageError):
    """A request field is unknown, mistyped or out of range; ``param`` names it."""

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


class BrowserOnly(AppError, RuntimeError):
    """A feature that needs the browser (Pyodide, the DOM, WebGPU) was used under CPython."""


class EngineError(AppError, RuntimeError):
    """The inference engine failed. ``original`` is the engine's own message, unchanged."""

    def __init__(self, message: str, *, original: str | None = None) -> None:
        super().__init__(message)
        self.original = original if original is not None else message


class WebGPUUnavailable(EngineError):
    """No WebGPU adapter on this page; ``reason`` is one of ``no-api``, ``no-adapter``, ``error``."""

    def __init__(self, message: str, *, reason: str = "no-api", original: str | None = None) -> None:
        super().__init__(message, original=original)
        self.reason = reason


class FeatureUnsupported(EngineError):
    """The model needs a WebGPU feature this browser does not offer."""


class ShaderF16Unsupported(FeatureUnsupported):
    """The model's weights are f16 and this GPU/browser has no ``shader-f16``: pick a q*f32 model."""


class BuiltInModelUnavailable(FeatureUnsupported):
    """The browser's built-in model (Chrome's ``LanguageModel``) cannot run here: the API is missing,
    or ``availability()`` said ``"unavailable"`` for these options. ``availability`` says which."""

    def __init__(self, message: str, *, availability: str = "unavailable", original: str | None = None) -> None:
        super().__init__(message, original=original)
        self.availability = availability


class ModelNotFound(EngineError):
    """The model id is not in the engine's model list (prebuilt or user-added)."""


class ModelNotLoaded(EngineError):
    """The request names a model that is not loaded in the engine."""


class ModelNotDownloaded(EngineError):
    """The model's files are not in the browser's cache, and fetching them was not allowed."""


class ModelFetchFailed(EngineError):
    """Fetching model files failed: the network dropped, or the server answered ``status``."""

    def __init__(self, message: str, *, status: int | None = None, original: str | None = None) -> None:
        super().__init__(message, original=original)
        self.status = status


class ChecksumMismatch(ModelFetchFailed):
    """A downloaded file's bytes do not have the checksum the model's tensor manifest gives for it
    (its ``md5sum``): the file changed on the server or was damaged on the way. Nothing of that
    file was stored (nor kept staged); downloading again fetches it whole. The message names it."""


class ContextWindowExceeded(EngineError):
    """The prompt is longer than the model's context window."""


class DeviceLost(EngineError):
    """The WebGPU device was lost, most often because the GPU ran out of memory."""


class EngineCrashed(EngineError):
    """The engine's Web Worker died (an uncaught error, out of memory, or it was terminated). What was
    in flight fails with this at once; the next load starts a new worker."""


class QuotaExceeded(EngineError):
    """The browser's storage quota cannot hold the model's files."""


class InsufficientStorage(QuotaExceeded):
    """A download was refused before it wrote anything: ``needed`` bytes do not fit the ``available``
    quota. ``evictable`` lists downloaded models, least recently used first, whose deletion would help."""

    def __init__(self, message: str, *, needed: int, available: int, evictable: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.needed = needed
        self.available = available
        self.evictable = evictable


class Aborted(EngineError):
    """The request was stopped before it finished."""


class AuthenticationFailed(EngineError):
    """The endpoint refused the API key (HTTP 401/403)."""


class RateLimited(EngineError):
    """The endpoint is rate limiting (HTTP 429); ``retry_after`` is in seconds when it said."""

    def __init__(self, message: str, *, retry_after: float | None = None, original: str | None = None) -> None:
        super().__init__(message, original=original)
        self.retry_after = retry_after


class ServerError(EngineError):
    """The endpoint failed on its side (HTTP 5xx); ``status`` is the code."""

    def __init__(self, message: str, *, status: int = 500, original: str | None = None) -> None:
        super().__init__(message, original=original)
        self.status = status


class BackendUnreachable(EngineError):
    """The endpoint could not be reached: network down, DNS, CORS, or the server is gone."""


class StreamStalled(BackendUnreachable):
    """A streamed answer stopped yielding chunks for ``idle_seconds`` (the middleware's Timeout); the
    stream was closed and what arrived before stays the caller's."""


class NoBackendAvailable(EngineError):
    """No backend could serve the request: each was skipped (offline, private, circuit open, context
    too small) or failed in a way that allows fallback. ``attempts`` lists why, one line per backend."""

    def __init__(self, message: str, *, attempts: tuple[str, ...] = (), original: str | None = None) -> None:
        super().__init__(message, original=original)
        self.attempts = attempts


class VisionUnavailable(NoBackendAvailable):
    """The request carries images and no backend that may serve it can see images (a text-only model,
    an endpoint whose preset does not declare vision). Choose a vision model, or send text only."""


class EngineRejected(EngineError):
    """The engine refused the request as invalid (a check this package does not duplicate)."""


class OutputParseError(EngineError):
    """The model's answer does not parse as the JSON (schema, tool call) that was asked for.

    ``text`` is the model's raw answer, so it can be shown or repaired::

        try:
            person = parse(completion.choices[0].message.content)
        except OutputParseError as exc:
            log(exc.text)
    """

    def __init__(self, message: str, *, text: str | None) -> None:
        super().__init__(message)
        self.text = text


class StorageClosed(AppError):
    """This tab's IndexedDB storage was closed because another tab opened it at a newer version (a
    newer release of the app): nothing can be read or written here until the page is reloaded."""


class ToolLoopLimit(AppError):
    """``run_tools`` made ``steps`` model calls and the model still asked for tools.

    ``messages`` is the conversation so far (ending with the last tool results, so it can be sent
    again to continue) and ``calls`` the tool calls made, as in ``RunToolsResult.calls``.
    """

    def __init__(self, message: str, *, messages: list, steps: int, calls: list) -> None:
        super().__init__(message)
        self.messages = messages
        self.steps = steps
        self.calls = calls


# web-llm's error names (``this.name``) -> our class. Names not listed fall back to message patterns.
_BY_NAME: dict[str, type[EngineError]] = {
    "WebGPUNotAvailableError": WebGPUUnavailable,
    "WebGPUNotFoundError": WebGPUUnavailable,
    "ShaderF16SupportError": ShaderF16Unsupported,
    "FeatureSupportError": FeatureUnsupported,
    "ModelNotFoundError": ModelNotFound,
    "MissingModelError": ModelNotFound,
    "ModelNotLoadedError": ModelNotLoaded,
    "WorkerEngineModelNotLoadedError": ModelNotLoaded,
    "SpecifiedModelNotFoundError": ModelNotLoaded,
    "UnclearModelToUseError": ModelNotLoaded,
    "ContextWindowSizeExceededError": ContextWindowExceeded,
    "DeviceLostError": DeviceLost,
    "EngineCrashedError": EngineCrashed,
    "QuotaExceededError": QuotaExceeded,
    "AbortError": Aborted,
    "NetworkError": ModelFetchFailed,
    "IntegrityError": ModelFetchFailed,
}
_REJECTED_NAMES = {
    "ConfigValueError", "MinValueError", "RangeError", "NonNegativeError", "InvalidNumberStringError",
    "DependencyError", "MessageOrderError", "SystemMessageOrderError", "ContentTypeError",
    "UnsupportedRoleError", "UnsupportedContentPartError", "UnsupportedDetailError",
    "UnsupportedImageURLError", "MultipleTextContentError", "UnsupportedFieldsError",
    "StreamingCountError", "SeedTypeError", "InvalidResponseFormatError",
    "InvalidResponseFormatGrammarError", "InvalidResponseFormatStructuralTagError",
    "CustomResponseFormatError", "UnsupportedModelIdError", "CustomSystemPromptError",
    "InvalidStreamOptionsError", "UserMessageContentErrorForNonVLM", "TypeError", "GrammarMatcherInitError",
    "ToolCallOutputParseError", "ToolCallOutputInvalidTypeError", "ToolCallOutputMissingFieldsError",
}
# Built-in JS error names say little by themselves: fetch() rejects with a bare "TypeError: Failed to
# fetch", so for these the message patterns below are tried before concluding EngineRejected.
_JS_BUILTIN_NAMES = {"TypeError", "RangeError"}
# Messages of errors that do not carry a useful name (a DOMException, a fetch TypeError, a device-lost
# string from the GPU process). Checked in order.
_BY_PATTERN: list[tuple[re.Pattern[str], type[EngineError]]] = [
    (re.compile(r"QuotaExceeded|quota", re.I), QuotaExceeded),
    (re.compile(r"device (was )?lost|GPUDevice.*lost", re.I), DeviceLost),
    (re.compile(r"Failed to fetch|Failed to execute 'add' on 'Cache'|Request failed|NetworkError|fetch failed|net::ERR_|Load failed|"
                r"Cannot fetch|status code 4\d\d|status code 5\d\d|Failed to load", re.I),
     ModelFetchFailed),
    (re.compile(r"shader-f16", re.I), ShaderF16Unsupported),
    (re.compile(r"context window size", re.I), ContextWindowExceeded),
    (re.compile(r"\babort|Engine\.unload\(\) is called", re.I), Aborted),
]
_NAMED = re.compile(r"^\s*(?:Uncaught\s+(?:\(in promise\)\s+)?)?(?:Error:\s+)?"
                    r"([A-Z][A-Za-z0-9]*(?:Error|Exception)):\s*(.*)$", re.S)


def from_engine_message(text: str, *, name: str | None = None) -> EngineError:
    """The typed error for an engine failure reported as ``"<Name>: <message>"`` (or ``name`` given).

    The original text is kept on ``.original``; the message shown is the engine's own message
    without the class-name prefix::

        err = from_engine_message("TypeError: Failed to fetch")
        isinstance(err, ModelFetchFailed), err.original   # (True, "TypeError: Failed to fetch")
    """
    text = str(text)
    message = text
    match = _NAMED.match(text)
    if name is None and match:
        name, message = match.group(1), match.group(2)
    elif match and match.group(1) == name:
        message = match.group(2)
    cls: type[EngineError] | None = _BY_NAME.get(name or "")
    if cls is None and (name not in _REJECTED_NAMES or name in _JS_BUILTIN_NAMES):
        for pattern, candidate in _BY_PATTERN:
            if pattern.search(text):
                cls = candidate
                break
    if cls is None and name in _REJECTED_NAMES:
        cls = EngineRejected
    cls = cls or EngineError
    if cls is WebGPUUnavailable:
        return WebGPUUnavailable(message, reason="no-adapter", original=text)
    return cls(message, original=text)


_CONTEXT_WORDS = re.compile(r"context[_ ]length|context window|context size|maximum context|too many tokens", re.I)


def from_http_status(status: int, body: str, *, retry_after: str | None = None) -> EngineError:
    """The typed error for an OpenAI-compatible endpoint's non-2xx answer.

        from_http_status(429, '{"error": {"message": "slow down"}}', retry_after="2").retry_after  # 2.0
    """
    message = body.strip()
    try:
        import json

        payload = json.loads(body)
        error = payload.get("error", payload) if isinstance(payload, dict) else payload
        if isinstance(error, dict) and error.get("message"):
            message = str(error["message"])
        elif isinstance(error, str):
            message = error
    except ValueError:
        pass
    message = f"HTTP {status}: {message[:500] or 'no details'}"
    original = body[:2000]
    if status in (401, 403):
        return AuthenticationFailed(message, original=original)
    if status == 429:
        seconds = None
        if retry_after is not None:
            try:
                seconds = max(0.0, float(retry_after))
            except ValueError:
                from email.utils import parsedate_to_datetime
                from datetime import datetime, timezone

                try:
                    when = parsedate_to_datetime(retry_after)
                    seconds = max(0.0, (when - datetime.now(timezone.utc)).total_seconds())
                except (TypeError, ValueError):
                    seconds = None
        return RateLimited(message, retry_after=seconds, original=original)
    if status == 404:
        return ModelNotFound(message, original=original)
    if status in (400, 413, 422) and _CONTEXT_WORDS.search(body):
        return ContextWindowExceeded(message, original=original)
    if 400 <= status < 500:
        return EngineRejected(message, original=original)
    if status >= 500:
        return ServerError(message, status=status, original=original)
    return EngineError(message, original=original)


# The Prompt API (Chrome's ``LanguageModel``) fails with DOMException names, documented in its
# explainer; the same names mean other things elsewhere (QuotaExceededError is about storage for
# web-llm but about the context window here), so they get their own table.
_PROMPT_API_NAMES: dict[str, type[EngineError]] = {
    "NotSupportedError": FeatureUnsupported,  # options, languages or schema features it cannot do
    "QuotaExceededError": ContextWindowExceeded,  # the input does not fit what is left of the window
    "AbortError": Aborted,
    "InvalidStateError": Aborted,  # the session was destroyed (or the document went away)
    "NetworkError": ModelFetchFailed,  # the model download failed
    "NotAllowedError": ModelNotDownloaded,  # a download needs a user gesture (or a policy forbids it)
    "TypeError": EngineRejected,
    "RangeError": EngineRejected,
}


def from_prompt_api(name: str, message: str) -> EngineError:
    """The typed error for a Prompt API rejection, from its DOMException ``name``::

        from_prompt_api("QuotaExceededError", "The input is too large.")   # ContextWindowExceeded
    """
    original = f"{name}: {message}"
    if name == "SyntaxError":  # the model could not produce output matching responseConstraint
        error = OutputParseError(f"the built-in model could not satisfy the JSON schema: {message}", text=None)
        error.original = original
        return error
    if name == "NotAllowedError":
        message = (f"{message} (Chrome downloads its built-in model only after a user gesture: "
                   "call load() from a click)")
    return _PROMPT_API_NAMES.get(name, EngineError)(message, original=original)
