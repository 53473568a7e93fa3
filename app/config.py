"""What a deployment says about the page (``static/chat-config.json``) and what a user sets (an endpoint).

    config = PageConfig.from_dict(await ffi.fetch_json("static/chat-config.json"))
    cloud = CloudConfig.parse({"base_url": "https://api.example/v1", "model": "gpt-4o-mini"})

Plain data, validated when read: a bad file or form field raises :class:`~app.errors.UsageError`
naming it, before anything is built from it. :class:`app.session.Session` is what builds from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from app.errors import InvalidRequest, UsageError

CONFIG_URL = "static/chat-config.json"
DEFAULT_MODEL = "Qwen2.5-0.5B-Instruct-q4f32_1-MLC"
# The model that embeds the user's files for app.knowledge (loaded beside the chat model when files
# are first added or searched): web-llm's smallest, 384 dimensions, batches of 4 (239 MB of VRAM).
DEFAULT_EMBEDDING_MODEL = "snowflake-arctic-embed-s-q0f32-MLC-b4"
# The router's policies (app.router.POLICIES; repeated here so reading a config imports no router).
POLICIES = ("priority", "prefer-local", "offline-only", "cost", "latency")


_LOOPBACK = ("localhost", "127.0.0.1", "::1")


def is_loopback(host: str) -> bool:
    """Whether ``host`` is this machine (browsers let an https page call those over plain http)."""
    host = host.lower().strip("[]")
    return host in _LOOPBACK or host.endswith(".localhost") or host.startswith("127.")


def check_endpoint_url(url: str, *, secure_page: bool = False, name: str = "base_url") -> str:
    """An OpenAI-compatible endpoint's base URL, checked before anything is sent to it: http(s) with a
    host, no ``user:pass@`` (a key belongs in the key field, never in a URL shown as a label), no
    ``?query`` or ``#fragment`` (paths are appended to it), and from an https page no plain http
    except to this machine (the browser would block it as mixed content). Raises UsageError."""
    parts = urlsplit(url)
    try:
        port = parts.port  # a bad port raises here
    except ValueError:
        port = -1
    if parts.scheme not in ("http", "https") or not parts.hostname or port == -1:
        raise UsageError(f"{name} must be an http(s) URL with a host, got {url!r}")
    if parts.username is not None or parts.password is not None:
        raise UsageError(f"{name} must not carry a user name or password (put the key in the API key field)")
    if parts.query or parts.fragment or url.rstrip().endswith(("?", "#")):
        raise UsageError(f"{name} must not have a ?query or #fragment, got {url!r}")
    if secure_page and parts.scheme == "http" and not is_loopback(parts.hostname):
        raise UsageError(f"{name} must be https: this page is served over https and the browser blocks plain "
                         f"http to {parts.hostname} (http is fine for this machine: localhost, 127.0.0.1)")
    return url.rstrip("/")


@dataclass(frozen=True)
class CloudConfig:
    """An OpenAI-compatible endpoint: where, which model, and (in memory only) the key."""

    base_url: str
    model: str
    api_key: str = ""
    label: str = ""
    context_window: int | None = None  # the server's context, in tokens, when the deployer says it

    @classmethod
    def parse(cls, form: dict[str, str], *, previous: CloudConfig | None = None,
              secure_page: bool = False) -> CloudConfig | None:
        """From the settings form; None when base URL is left empty. Bad input -> UsageError.

        ``previous`` is the endpoint in use: its label stays for the same URL, and its key is never
        carried to another origin (a key left in the form after only the URL changed is dropped:
        the key of one provider must not be sent to another)."""
        base_url = (form.get("base_url") or "").strip()
        if not base_url:
            return None
        base_url = check_endpoint_url(base_url, secure_page=secure_page, name="the endpoint URL")
        model = (form.get("model") or "").strip()
        if not model:
            raise UsageError("the endpoint needs a model id (e.g. gpt-4o-mini)")
        key = (form.get("api_key") or "").strip()
        label = (form.get("label") or "").strip()
        window_text = str(form.get("context_window") or "").strip()
        if window_text and (not window_text.isdigit() or int(window_text) < 1):
            raise UsageError(f"the endpoint's context_window must be a whole number of tokens, got {window_text!r}")
        window = int(window_text) if window_text else None
        if previous is not None:
            if _origin(previous.base_url) != _origin(base_url) and key == previous.api_key:
                key = ""
            if previous.base_url == base_url and not label:
                label = previous.label
            if previous.base_url == base_url and window is None:
                window = previous.context_window
        return cls(base_url=base_url, model=model, api_key=key, label=label or urlsplit(base_url).netloc,
                   context_window=window)

    def to_record(self) -> dict[str, Any]:
        """What is kept across reloads: everything but the key."""
        record: dict[str, Any] = {"base_url": self.base_url, "model": self.model, "label": self.label}
        if self.context_window is not None:
            record["context_window"] = self.context_window
        return record


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{(parts.netloc or '').lower()}"


@dataclass(frozen=True)
class RequestLimits:
    """How every chat request is bounded (app.middleware Retry and Timeout).

    ``first_token_s``: a stream must yield its first token within this (a hung endpoint, a lost
    worker); ``idle_s``: then each next token within this of the one before (an answer that stalls
    mid-way ends with StreamStalled, keeping what came); ``request_s``: a whole non-streamed answer;
    ``attempts``: tries of an endpoint on failures another try may cure (5xx, 429, unreachable, timed
    out). A local model gets ``local_first_token_s``: its prefill on a slow GPU may take much longer
    than a server's.
    """

    first_token_s: float = 60.0
    local_first_token_s: float = 300.0
    idle_s: float = 60.0
    request_s: float = 300.0
    attempts: int = 2

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> RequestLimits:
        d = dict(d or {})
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise UsageError(f"limits: unknown field(s) {', '.join(sorted(unknown))}")
        for name, value in d.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise UsageError(f"limits.{name} must be a positive number, got {value!r}")
        if "attempts" in d and (not float(d["attempts"]).is_integer() or d["attempts"] > 10):
            raise UsageError(f"limits.attempts must be a whole number from 1 to 10, got {d['attempts']!r}")
        return cls(**{k: (int(v) if k == "attempts" else float(v)) for k, v in d.items()})


@dataclass(frozen=True)
class PageConfig:
    """``static/chat-config.json``: the web-llm model to chat with, its appConfig (None: web-llm's
    prebuilt list), the routing policy, an optional endpoint, whether Chrome's built-in model may
    answer, the request limits and the offline service worker."""

    model: str | None = DEFAULT_MODEL
    app_config: dict[str, Any] | None = None
    policy: str = "prefer-local"
    cloud: CloudConfig | None = None
    # The app-shell service worker (sw.js: the app starts offline after one visit). True: registered,
    # except in automated browsers (navigator.webdriver: tests count and overlay requests); "always":
    # registered there too; False: never.
    offline: bool | str = False
    builtin: bool = True  # Chrome's built-in model (Prompt API) is a route when the browser has one
    # After a conversation's first exchange an on-device model names it (app/titles.py); False: a
    # conversation is named after the first words of its first message.
    auto_title: bool = True
    limits: RequestLimits = field(default_factory=RequestLimits)
    # Origins whose pages may frame this app (static/widget.js, or any <iframe>). None of them by
    # default: then only the app's own origin may, and a page framed by anything else refuses to run.
    embed_hosts: tuple[str, ...] = ()
    embedding_model: str = DEFAULT_EMBEDDING_MODEL  # web-llm embedding model of app.knowledge (the Files sheet)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> PageConfig:
        d = d or {}
        policy = d.get("policy", "prefer-local")
        if policy not in POLICIES:
            raise UsageError(f"policy must be one of {', '.join(POLICIES)}, got {policy!r}")
        cloud = CloudConfig.parse({k: str(v) for k, v in d["cloud"].items()}) if d.get("cloud") else None
        app_config = d.get("app_config")
        if app_config is not None and not isinstance(app_config, dict):
            raise UsageError("app_config must be an object with a model_list")
        offline = d.get("offline", False)
        if offline not in (True, False, "always"):
            raise UsageError(f"offline must be true, false or \"always\", got {offline!r}")
        builtin = d.get("builtin", True)
        if not isinstance(builtin, bool):
            raise UsageError(f"builtin must be true or false, got {builtin!r}")
        auto_title = d.get("auto_title", True)
        if not isinstance(auto_title, bool):
            raise UsageError(f"auto_title must be true or false, got {auto_title!r}")
        embedding_model = d.get("embedding_model", DEFAULT_EMBEDDING_MODEL)
        if not isinstance(embedding_model, str) or not embedding_model:
            raise UsageError(f"embedding_model must be a web-llm model id, got {embedding_model!r}")
        return cls(model=d.get("model", DEFAULT_MODEL) or None, app_config=app_config, policy=policy, cloud=cloud,
                   offline=offline, builtin=builtin, auto_title=auto_title, limits=RequestLimits.from_dict(d.get("limits")),
                   embed_hosts=_embed_hosts(d.get("embed")), embedding_model=embedding_model)


def _embed_hosts(embed: Any) -> tuple[str, ...]:
    """``embed.allowed_hosts``: exact origins (scheme://host[:port]); a wildcard or a path is refused,
    so a deployer cannot allow more than they named."""
    if embed is None:
        return ()
    if not isinstance(embed, dict) or set(embed) - {"allowed_hosts"}:
        raise UsageError('embed must be an object {"allowed_hosts": ["https://host.example"]}')
    hosts = embed.get("allowed_hosts", [])
    if not isinstance(hosts, list):
        raise UsageError("embed.allowed_hosts must be a list of origins")
    out = []
    for host in hosts:
        parts = urlsplit(host) if isinstance(host, str) else None
        if (parts is None or parts.scheme not in ("http", "https") or not parts.hostname or "*" in host
                or parts.path not in ("", "/") or parts.query or parts.fragment or parts.username):
            raise UsageError(f"embed.allowed_hosts: {host!r} is not an origin like https://host.example")
        out.append(f"{parts.scheme}://{parts.netloc.lower()}")
    return tuple(out)


# What the chat does when a conversation outgrows the model's context window: leave its oldest turns
# out, or have the model summarise them into a pinned summary message sent instead (app.ui.chat).
CONTEXT_POLICIES = ("drop-oldest", "summarise")


@dataclass(frozen=True)
class Settings:
    """What every request of the chat is sent with, and what happens when the history will not fit."""

    system_prompt: str = ""
    temperature: float = 0.7
    max_tokens: int = 1024
    context_policy: str = "drop-oldest"

    @classmethod
    def parse(cls, form: dict[str, str]) -> Settings:
        """Settings from form text; bad input raises :class:`InvalidRequest` naming the field."""
        try:
            temperature = float(form.get("temperature", "0.7") or "0.7")
        except ValueError:
            raise InvalidRequest("temperature must be a number between 0 and 2", param="temperature") from None
        if not 0 <= temperature <= 2:
            raise InvalidRequest("temperature must be between 0 and 2", param="temperature")
        text = (form.get("max_tokens", "1024") or "1024").strip()
        if not text.isdigit() or not 1 <= int(text) <= 1_000_000:
            raise InvalidRequest("max tokens must be a whole number of at least 1", param="max_tokens")
        policy = (form.get("context_policy") or "drop-oldest").strip()
        if policy not in CONTEXT_POLICIES:
            raise InvalidRequest(f"when the history will not fit: one of {', '.join(CONTEXT_POLICIES)}, got {policy!r}",
                                 param="context_policy")
        return cls(system_prompt=form.get("system_prompt", "").strip(), temperature=temperature,
                   max_tokens=int(text), context_policy=policy)

    def to_record(self) -> dict[str, Any]:
        return {"system_prompt": self.system_prompt, "temperature": self.temperature, "max_tokens": self.max_tokens,
                "context_policy": self.context_policy}

    @classmethod
    def from_record(cls, record: dict[str, Any] | None) -> Settings:
        if not record:
            return cls()
        return cls(system_prompt=str(record.get("system_prompt", "")),
                   temperature=float(record.get("temperature", 0.7)), max_tokens=int(record.get("max_tokens", 1024)),
                   context_policy=policy if (policy := record.get("context_policy")) in CONTEXT_POLICIES else "drop-oldest")

    def params(self) -> dict[str, Any]:
        return {"temperature": self.temperature, "max_tokens": self.max_tokens}
