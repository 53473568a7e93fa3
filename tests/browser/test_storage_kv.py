"""The app's own IndexedDB key-value stores (app.ffi.kv_*), in real Chromium."""

import pytest

from tests.browser.conftest import PagePython, PyError, open_app


def test_values_survive_a_reload_and_deletes_stick(page, site):
    watch = open_app(page, site)
    py = PagePython(page)
    py("""
from app import ffi
await ffi.kv_put("settings", "theme", {"name": "dark", "size": 3, "none": None})
await ffi.kv_put("settings", "gone", [1, 2])
await ffi.kv_delete("settings", "gone")
""")
    page.reload()
    page.wait_for_selector("body[data-state=ready]")
    py = PagePython(page)
    assert py("from app import ffi; await ffi.kv_get('settings', 'theme')") == {"name": "dark", "size": 3, "none": None}
    assert py("await ffi.kv_get('settings', 'gone')") is None
    assert py("await ffi.kv_items('settings')") == {"theme": {"name": "dark", "size": 3, "none": None}}
    watch.assert_clean()


def test_unknown_store_is_an_error_not_a_silent_miss(page, site):
    watch = open_app(page, site)
    py = PagePython(page)
    with pytest.raises(PyError) as info:
        py("from app import ffi; await ffi.kv_get('no-such-store', 'k')")
    assert "NotFoundError" in str(info.value) or "not found" in str(info.value).lower()
    watch.assert_clean()


def test_a_write_refused_for_quota_is_a_typed_error_not_a_hang(page, site):
    # Set before the page opens IndexedDB: Chromium grants IndexedDB space from a 30 s allowance.
    cdp = page.context.new_cdp_session(page)
    cdp.send("Storage.overrideQuotaForOrigin", {"origin": site.origin, "quotaSize": 1})
    watch = open_app(page, site)
    py = PagePython(page)
    with pytest.raises(PyError) as info:
        py("from app import ffi; await ffi.kv_put('settings', 'big', 'x' * 100_000)", timeout_ms=15_000)
    assert info.value.type == "QuotaExceeded"
    assert py("await ffi.kv_get('settings', 'big')") is None  # reads still work
    cdp.send("Storage.overrideQuotaForOrigin", {"origin": site.origin})
    py("await ffi.kv_put('settings', 'big', 'x' * 100_000)")
    assert py("len(await ffi.kv_get('settings', 'big'))") == 100_000
    watch.assert_clean()
