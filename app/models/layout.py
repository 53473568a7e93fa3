"""Where and how web-llm keeps a model's files, per web-llm release: the one place that knows it.

Downloads write into web-llm's own store, and storage accounting reads it, so both must agree with
the vendored release on every name: which cache or database, which key, which shape each value has.
:class:`StoreLayout` holds those facts for one release; ``static/storage.js`` only executes the
store specs built here (it opens the cache, database or directory it is told to, and puts, lists and
deletes the entries it is given).

    layout = StoreLayout.for_version("0.2.79")        # or (0, 2, 79); StoreLayout() is the pinned one
    layout.manifest_name                              # "ndarray-cache.json"
    layout.app_config_options("indexeddb")            # {"useIndexedDBCache": True}
    base = layout.base_url(record["model"])
    layout.artifact("config", layout.config_url(base))  # (key, scope, storetype)
    layout.store("indexeddb", "webllm/model")         # the spec static/storage.js opens

What was read, in each release's ``lib/index.js`` (0.2.79 and the pinned 0.2.86 in full, the
changes in between confirmed in 0.2.80-0.2.85; ``79:4613`` is line 4613 of 0.2.79's file):

- Scopes and keys, all releases: ``webllm/config`` (``mlc-chat-config.json``), ``webllm/wasm`` (the
  model library) and ``webllm/model`` (tokenizer, tensor manifest, shards); every key is the file's
  full URL, resolved against ``cleanModelUrl(record.model)``, which appends a slash and
  ``resolve/main/`` unless the URL has ``/resolve/<rev>/`` (79:8281, 86:11280, the same code).
- The tensor manifest: ``hasNDArrayInCache`` / ``fetchNDArrayCache`` read ``ndarray-cache.json``
  in 0.2.79 (79:4613, 79:5817); ``hasTensorInCache`` / ``fetchTensorCache`` read
  ``tensor-cache.json`` from 0.2.80 on (80:4759, 86:6989, 86:8107). Both read it with storetype
  ``json``. ``hasModelInCache`` (79:10235, 86:14840) is true when the manifest and every shard it
  lists (``records[].dataPath``) are in ``webllm/model``: config, tokenizer and library are not checked.
- The store option: 0.2.79-0.2.82 read ``appConfig.useIndexedDBCache`` (79:912, 82:943; true:
  IndexedDB, else the Cache API). 0.2.83 replaced it with ``appConfig.cacheBackend``
  (``getCacheBackend``, 83:929, 86:957: ``cache``, ``indexeddb``, ``cross-origin``; ``opfs`` from
  0.2.84) and reads ``useIndexedDBCache`` no more (the name is gone from its file).
- OPFS: absent before 0.2.84. 0.2.84's ``OPFSStore`` (84:5093) keeps ``tvmjs-opfs-store/<scope parts,
  URI-encoded>/<sha256 hex of the URL>.bin`` under the origin's root, plus ``.meta.json``
  {url, contentType}, and counts an entry present when its ``.bin`` exists. From 0.2.85 the record
  is ``.record.json`` {url, nbytes, contentType?} (86:5836, 86:6265) and an entry counts only when
  the payload has ``nbytes`` bytes.
- The config's storetype: 0.2.79-0.2.82 fetch ``mlc-chat-config.json`` as ``json`` (79:10718,
  82:11041); from 0.2.83 (integrity checks) as ``arraybuffer`` (83:12125, 86:18239). It matters in
  IndexedDB only, which keeps the converted value: a config stored as bytes gives 0.2.79 an empty
  config object.
- IndexedDB, all releases: ``ArtifactIndexedDBCache(scope)`` (79:4410, 86:6598) opens the database
  named after the scope, version 1, object store ``urls`` with keyPath ``url``, values ``{url, data}``
  (data: parsed JSON or an ArrayBuffer). The Cache API (``ArtifactCache``, 79:4323, 86:6512):
  ``caches.open(scope)``, ``Request(url)`` -> Response.
- Model libraries, all releases: fetched without caching when the URL contains ``localhost`` or does
  not start with ``http`` (79:10734, 86:18253); cached in ``webllm/wasm`` (``arraybuffer``) otherwise.
  Tokenizer: ``tokenizer.json`` if listed, else ``tokenizer.model``, ``arraybuffer`` (79:10325).
- 0.2.86 only: a record may name a ``model_manifest`` (``mlc-model-manifest.json``, kept in
  ``webllm/config``) that moves the config and tensor manifest; this app does not download those.
- ``cacheBackend: "cross-origin"`` (0.2.83 on; a browser extension's store): nothing here can write
  there, so it is not offered.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urljoin

from app.errors import UsageError

Version = tuple[int, int, int]

PINNED: Version = (0, 2, 86)  # package.json's @mlc-ai/web-llm, the release tests run against
OLDEST: Version = (0, 2, 79)  # the oldest release this app supports (build.py --web-llm)

CONFIG_SCOPE = "webllm/config"
WASM_SCOPE = "webllm/wasm"
MODEL_SCOPE = "webllm/model"
SCOPES = (CONFIG_SCOPE, WASM_SCOPE, MODEL_SCOPE)
BACKENDS = ("cache", "indexeddb", "opfs")  # every store some release reads; see StoreLayout.backends
KINDS = ("config", "manifest", "tokenizer", "lib", "shard")

CONFIG_NAME = "mlc-chat-config.json"
_SCOPE_OF_KIND = {"config": CONFIG_SCOPE, "lib": WASM_SCOPE, "manifest": MODEL_SCOPE,
                  "tokenizer": MODEL_SCOPE, "shard": MODEL_SCOPE}
_OPFS_ROOT = "tvmjs-opfs-store"
_STORE_OPTION_KEYS = ("cacheBackend", "useIndexedDBCache")  # every release's appConfig keys for the store


def parse_version(text: str) -> Version:
    """``"0.2.86"`` (the npm version in VERSIONS.json) -> ``(0, 2, 86)``."""
    match = re.search(r"(\d+)[._](\d+)[._](\d+)", text or "")
    if not match:
        raise ValueError(f"not a web-llm version: {text!r}")
    return int(match[1]), int(match[2]), int(match[3])


def clean_model_url(url: str) -> str:
    """The base URL web-llm fetches a model's files from (its ``cleanModelUrl``, the same in every
    supported release): a trailing slash, and ``resolve/main/`` appended unless the URL already
    names a ``/resolve/<revision>/``."""
    url = url if url.endswith("/") else url + "/"
    if not re.match(r".+/resolve/.+/", url):
        url += "resolve/main/"
    return url


def _dotted(version: Version) -> str:
    return ".".join(map(str, version))


@dataclass(frozen=True, slots=True)
class StoreLayout:
    """web-llm's store layout in one release (see the module docstring for what differs).

    ``StoreLayout()`` is the pinned release; a release newer than the newest one read here gets
    that newest one's facts.
    """

    version: Version = PINNED

    @classmethod
    def for_version(cls, version: str | Version) -> StoreLayout:
        """The layout of ``version``: ``"0.2.79"`` (as VERSIONS.json has it) or ``(0, 2, 79)``."""
        parsed = parse_version(version) if isinstance(version, str) else tuple(int(p) for p in version)
        if len(parsed) != 3:
            raise UsageError(f"a web-llm version has three parts, got {version!r}")
        if parsed < OLDEST:
            raise UsageError(f"web-llm {_dotted(parsed)} is older than the oldest supported release, "
                             f"{_dotted(OLDEST)}")
        return cls(parsed)  # type: ignore[arg-type]

    @property
    def release(self) -> str:
        return _dotted(self.version)

    # ------------------------------------------------------------------ what the release reads

    @property
    def manifest_name(self) -> str:
        """The tensor manifest's file name (renamed in 0.2.80)."""
        return "tensor-cache.json" if self.version >= (0, 2, 80) else "ndarray-cache.json"

    @property
    def other_manifest_names(self) -> tuple[str, ...]:
        """Manifest names other releases use, which this one never asks for."""
        return tuple(n for n in ("ndarray-cache.json", "tensor-cache.json") if n != self.manifest_name)

    @property
    def backends(self) -> tuple[str, ...]:
        """The stores this release can keep model files in and this app can write."""
        return BACKENDS if self.version >= (0, 2, 84) else ("cache", "indexeddb")

    @property
    def model_manifest(self) -> bool:
        """Whether a model record may name a ``model_manifest`` (a model package manifest)."""
        return self.version >= (0, 2, 86)

    def check_backend(self, backend: str) -> None:
        """UsageError unless ``backend`` is a store this release reads."""
        if backend not in BACKENDS:
            raise UsageError(f"cache backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
        if backend not in self.backends:
            raise UsageError(f"web-llm {self.release} has no OPFS cache (0.2.84+ has)")

    def app_config_options(self, backend: str) -> dict[str, Any]:
        """The appConfig keys that make web-llm use ``backend``."""
        self.check_backend(backend)
        if self.version >= (0, 2, 83):
            return {"cacheBackend": backend}
        return {"useIndexedDBCache": backend == "indexeddb"}

    def app_config_with(self, app_config: dict[str, Any], backend: str) -> dict[str, Any]:
        """``app_config`` (e.g. a prebuilt one, which names its release's default store) with this
        release's keys for ``backend`` only."""
        config = {k: v for k, v in app_config.items() if k not in _STORE_OPTION_KEYS}
        return {**config, **self.app_config_options(backend)}

    # ------------------------------------------------------------------ files and keys

    def base_url(self, model_url: str) -> str:
        """The URL a model record's files are keyed under (``record["model"]`` in, cleaned)."""
        return clean_model_url(model_url)

    def lib_is_cached(self, lib_url: str) -> bool:
        """Whether web-llm caches this model library: only an absolute http(s) URL not on localhost
        (it fetches the others again at every load, so storing them ahead would be wasted)."""
        return lib_url.startswith("http") and "localhost" not in lib_url

    def storetype(self, kind: str) -> str:
        """How web-llm reads this kind of file back (``json`` or ``arraybuffer``); IndexedDB stores
        the converted value."""
        if kind not in KINDS:
            raise ValueError(f"unknown artifact kind {kind!r}")
        if kind == "manifest" or (kind == "config" and self.version < (0, 2, 83)):
            return "json"
        return "arraybuffer"

    def scope(self, kind: str) -> str:
        if kind not in KINDS:
            raise ValueError(f"unknown artifact kind {kind!r}")
        return _SCOPE_OF_KIND[kind]

    def config_url(self, base_url: str) -> str:
        return base_url + CONFIG_NAME

    def manifest_url(self, base_url: str) -> str:
        return base_url + self.manifest_name

    def tokenizer_url(self, base_url: str, tokenizer_files: list[str]) -> str | None:
        """The one tokenizer file web-llm loads (``tokenizer.json`` before ``tokenizer.model``)."""
        for name in ("tokenizer.json", "tokenizer.model"):
            if name in tokenizer_files:
                return base_url + name
        return None

    def shard_url(self, base_url: str, data_path: str) -> str:
        """A shard's key: ``new URL(record.dataPath, base).href``."""
        return urljoin(base_url, data_path)

    def artifact(self, kind: str, url: str) -> tuple[str, str, str]:
        """``(key, scope, storetype)`` of the file at ``url``."""
        return url, self.scope(kind), self.storetype(kind)

    def keeps_served_bytes(self, backend: str, storetype: str) -> bool:
        """Whether the stored entry has the served file's size: web-llm's IndexedDB store keeps a
        ``json`` file parsed, so its size is not the file's."""
        return not (backend == "indexeddb" and storetype == "json")

    # ------------------------------------------------------------------ stores, for static/storage.js

    def store(self, backend: str, scope: str) -> dict[str, Any]:
        """The spec of one of web-llm's stores for static/storage.js (``listStore`` and friends)."""
        self.check_backend(backend)
        if scope not in SCOPES:
            raise ValueError(f"unknown scope {scope!r}")
        if backend == "cache":
            return {"type": "cache", "name": scope}
        if backend == "indexeddb":
            return {"type": "indexeddb", "database": scope, "version": 1, "objectStore": "urls",
                    "keyPath": "url", "valueField": "data"}
        parts = [quote(p, safe="-_.!~*'()") for p in scope.split("/") if p]  # encodeURIComponent
        record = {"recordSuffix": ".meta.json", "sizeField": None} if self.version < (0, 2, 85) else \
            {"recordSuffix": ".record.json", "sizeField": "nbytes"}
        return {"type": "opfs", "directory": [_OPFS_ROOT, *parts], "payloadSuffix": ".bin",
                "keyField": "url", "typeField": "contentType", **record}

    def entry(self, backend: str, url: str, storetype: str = "arraybuffer") -> dict[str, Any]:
        """One entry of a store spec: its key, how the value is kept, and (OPFS) its file names."""
        out: dict[str, Any] = {"key": url, "storetype": storetype}
        if backend == "opfs":
            out["file"] = hashlib.sha256(url.encode()).hexdigest()
            out["record"] = {"url": url}
        return out
