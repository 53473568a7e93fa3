"""Each bridge of app/ffi/ and the fake the unit tests use in its place have the same shape.

The Protocol is the contract: every member it names exists on the real bridge module and on the fake,
both async or both not, with the same parameters (names, kinds, which have defaults). The objects they
hand out (streams, sessions, downloads, engine handles) are checked against their Protocols the same
way. tests/browser/test_bridge_contract.py runs one small scenario on both and compares results.
"""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from app.ffi import _reader, channel, dom, engine, http, images, page, prompt_api, storage
from app.models.catalog import CatalogBridge
from tests.unit.backends.test_chrome_ai import FakePromptApi, FakePromptStream, FakeSession
from tests.unit.backends.test_openai_compat import ANSWER, FakeHttp
from tests.unit.fakes import FakeChannels, FakeChunkIterator, FakeEngineApi, FakeEngineHandle, FakeImages
from tests.unit.models.fake_store import FakeFileDownload, FakeStoreApi


def members(protocol: type) -> dict[str, Any]:
    """The Protocol's own members and those of the Protocols it extends."""
    out: dict[str, Any] = {}
    for klass in reversed(protocol.__mro__):
        if klass in (object,) or not getattr(klass, "_is_protocol", False) or klass.__module__ == "typing":
            continue
        out.update({name: value for name, value in vars(klass).items()
                    if callable(value) and (not name.startswith("_") or name in ("__aiter__", "__anext__"))})
    return out


def shape(fn: Any, *, unbound: bool = False) -> tuple[bool, list[tuple[str, Any, bool]]]:
    """(async?, [(name, kind, has default)]) of a function, method or class (its constructor)."""
    params = list(inspect.signature(fn).parameters.values())
    if unbound:
        params = params[1:]  # self
    is_async = inspect.iscoroutinefunction(fn)
    return is_async, [(p.name, p.kind, p.default is not inspect.Parameter.empty) for p in params]


def assert_matches(protocol: type, real: Any, fake: Any) -> None:
    assert isinstance(real, protocol) and isinstance(fake, protocol)
    for name, declared in members(protocol).items():
        want = shape(declared, unbound=True)
        for side, impl in (("real", real), ("fake", fake)):
            got = getattr(impl, name)
            if inspect.isclass(got):  # a class handed out by the bridge (HttpStream, FileDownload, ...)
                got = shape(got)
                assert got[1] == want[1], f"{side} {name}{got} != {protocol.__name__}.{name}{want}"
                continue
            assert shape(got) == want, f"{side} {name}{shape(got)} != {protocol.__name__}.{name}{want}"


BRIDGES = [
    (engine.EngineBridge, engine, FakeEngineApi()),
    (storage.StorageBridge, storage, FakeStoreApi({})),
    (storage.KeyValueBridge, storage, FakeStoreApi({})),
    (http.HttpBridge, http, FakeHttp(ANSWER)),
    (prompt_api.PromptApiBridge, prompt_api, FakePromptApi()),
    (channel.ChannelBridge, channel, FakeChannels()),
    (images.ImagesBridge, images, FakeImages()),
]


@pytest.mark.parametrize(("protocol", "real", "fake"), BRIDGES, ids=lambda x: getattr(x, "__name__", ""))
def test_fake_has_the_shape_of_the_real_bridge(protocol, real, fake):
    assert_matches(protocol, real, fake)


def test_catalog_reads_what_both_the_package_and_the_storage_fake_offer():
    from app import ffi

    assert_matches(CatalogBridge, ffi, FakeStoreApi({}))


# What the bridges hand out: the real class against the fake's, member by member (methods unbound).
HANDED_OUT = [
    (engine.ChunkStream, engine.ChunkIterator, FakeChunkIterator),
    (engine.Closable, engine.EngineHandle, FakeEngineHandle),
    (_reader.TextStream, http.HttpStream, FakeHttp(ANSWER).HttpStream),
    (storage.Download, storage.FileDownload, FakeFileDownload),
    (prompt_api.Session, prompt_api.PromptSession, FakeSession),
    (_reader.TextStream, prompt_api.PromptStream, FakePromptStream),
]


@pytest.mark.parametrize(("protocol", "real", "fake"), HANDED_OUT, ids=lambda x: getattr(x, "__name__", ""))
def test_what_the_bridge_hands_out_has_the_same_shape(protocol, real, fake):
    for name, declared in members(protocol).items():
        want = shape(declared, unbound=True)
        for side, klass in (("real", real), ("fake", fake)):
            got = shape(getattr(klass, name), unbound=True)
            assert got == want, f"{side} {klass.__name__}.{name}{got} != {protocol.__name__}.{name}{want}"


@pytest.mark.parametrize(("protocol", "module"), [(dom.DomBridge, dom), (page.PageBridge, page),
                                                  (storage.StorageEvents, storage)],
                         ids=lambda p: getattr(p, "__name__", ""))
def test_bridges_without_a_fake_match_their_protocol(protocol, module):
    # No unit test fakes the DOM, the page or storage events yet; the module must match what it declares.
    for name, declared in members(protocol).items():
        assert shape(getattr(module, name)) == shape(declared, unbound=True), name


def test_every_public_function_of_a_bridge_is_in_its_protocol():
    # A new function consumers use must be declared, or its fake can silently drift.
    for module, protocols in ((engine, [engine.EngineBridge]),
                              (storage, [storage.StorageBridge, storage.StorageEvents]),
                              (http, [http.HttpBridge]), (prompt_api, [prompt_api.PromptApiBridge]),
                              (dom, [dom.DomBridge]), (page, [page.PageBridge]), (images, [images.ImagesBridge])):
        declared = set().union(*(members(p) for p in protocols))
        public = {name for name in module.__all__ if callable(getattr(module, name))
                  and not getattr(getattr(module, name), "_is_protocol", False)}
        assert public - declared <= {"call_method", "EngineHandle", "Node", "PromptSession"}, module.__name__
