"""The app's IndexedDB database opened at a newer version by another tab, and a tab whose open is
blocked by an older tab (static/storage.js: `versionchange` closes every connection; `blocked` waits).

The newer version is a second page of the same origin calling the module's exported
``openDatabase(name, version + 1, upgrade)``, as a newer release's code would; the older tab is a page
holding the database open with plain IndexedDB and no `versionchange` handler, as code from before
this handling does. Both are plain same-origin documents (a JSON file of the site), not the app.
"""

from __future__ import annotations

import pytest

from tests.browser.conftest import READY_TIMEOUT_MS, PagePython, PyError, open_app, watch

APP_DB = "webllm-py"
SUPERSEDED = "This tab closed its storage because a newer version of the app opened; reload."
BLOCKED = "Waiting for another tab of this app (an older version) to close its storage; close or reload that tab."

# A newer release's code in another tab: the app's own module opens the database one version up.
OPEN_ONE_VERSION_UP = """async ([url, name]) => {
  const storage = await import(url);
  const known = (await indexedDB.databases()).find((d) => d.name === name);
  const db = await storage.openDatabase(name, known.version + 1, () => {});
  const value = await new Promise((resolve, reject) => {
    const request = db.transaction('settings').objectStore('settings').get('probe');
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
  const out = {before: known.version, version: db.version, value};
  db.close();
  return out;
}"""

# Code from before this handling in another tab: the database at version 1, held open, deaf to
# `versionchange`.
HOLD_OLD_VERSION = """(name) => new Promise((resolve, reject) => {
  const request = indexedDB.open(name, 1);
  request.onupgradeneeded = () => { request.result.createObjectStore('settings'); };
  request.onsuccess = () => {
    const db = request.result;
    const tx = db.transaction('settings', 'readwrite');
    tx.objectStore('settings').put({kept: 'since version 1'}, 'probe');
    tx.oncomplete = () => { window.heldDatabase = db; resolve(db.version); };
    tx.onerror = () => reject(tx.error);
  };
  request.onerror = () => reject(request.error);
})"""


def other_page(context, site):
    """A same-origin document that is not the app (no app code runs in it)."""
    other = context.new_page()
    w = watch(other, site.origin)
    other.goto(site.url + "static/vendor/VERSIONS.json")
    return other, w


def test_a_newer_version_opening_the_database_closes_this_tabs_storage_with_a_notice(page, site):
    """The old tab closes its connection at once and says "This tab closed its storage because a newer
    version of the app opened; reload"; the newer one opens without waiting and reads what was stored;
    the old tab's next storage call fails with StorageClosed instead of hanging."""
    w = open_app(page, site)
    page.wait_for_selector("#chat[data-state=ready]", timeout=READY_TIMEOUT_MS)
    py = PagePython(page)
    py("from app import ffi; await ffi.kv_put('settings', 'probe', {'kept': 'by the old tab'})")

    newer, w2 = other_page(page.context, site)
    opened = newer.evaluate(OPEN_ONE_VERSION_UP, [site.url + "static/storage.js", APP_DB])  # today: blocked
    assert opened["version"] == opened["before"] + 1
    assert opened["value"] == {"kept": "by the old tab"}  # nothing stored is lost

    page.wait_for_selector("#app-notice:not([hidden])", timeout=10_000)
    assert page.inner_text("#app-notice-text") == SUPERSEDED
    assert page.inner_text("#app-notice-reload") == "Reload"
    with pytest.raises(PyError) as info:
        py("await ffi.kv_get('settings', 'probe')", timeout_ms=10_000)
    assert info.value.type == "StorageClosed" and "newer version" in info.value.message
    with pytest.raises(PyError) as info:
        py("await ffi.kv_put('settings', 'later', 1)", timeout_ms=10_000)
    assert info.value.type == "StorageClosed"
    w.assert_clean()
    w2.assert_clean()


def test_an_open_blocked_by_an_old_tab_waits_and_the_app_starts_when_that_tab_closes(page, site):
    """While an older tab holds the database at an older version, the app says it waits for that tab
    and does not fail; when it closes, the upgrade runs, the chat mounts and what was stored is there."""
    old, w_old = other_page(page.context, site)
    assert old.evaluate(HOLD_OLD_VERSION, APP_DB) == 1

    w = open_app(page, site)
    page.wait_for_selector("#app-notice:not([hidden])", timeout=READY_TIMEOUT_MS)  # today: the open rejects
    assert page.inner_text("#app-notice-text") == BLOCKED
    assert page.is_hidden("#app-notice-reload")
    assert page.get_attribute("#chat", "data-state") == "loading"  # waiting, not failed

    old.evaluate("() => window.heldDatabase.close()")
    page.wait_for_selector("#chat[data-state=ready]", timeout=READY_TIMEOUT_MS)
    assert page.is_hidden("#app-notice")
    py = PagePython(page)
    assert py("from app import ffi; await ffi.kv_get('settings', 'probe')") == {"kept": "since version 1"}
    w.assert_clean()
    w_old.assert_clean()
