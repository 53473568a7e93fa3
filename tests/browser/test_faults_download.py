"""Download faults in real Chromium: two tabs (or two twin ids) downloading the same files, a file
changed on the server between cancel and resume, a resume after a dropped connection, a server that
answers the wrong Content-Range, and a shard whose bytes do not match the manifest's checksum.

The synthetic model server (tests/browser/model_server.py) serves the files with ETags and honours
``If-Range``; the page downloads for real into web-llm's Cache API store, and what is stored is read
back and compared byte for byte (by SHA-256) with what the server serves. Progress crosses to the
test as a plain object on ``window`` (``window.<key>``, and ``window.<key>_end`` once the download
ended: its final phase, or the error's class name), so every wait is a condition on the page.
"""

from __future__ import annotations

import hashlib
import json

import pytest

from tests.browser.conftest import PagePython, open_app
from tests.browser.model_server import ModelServer, SyntheticModel

MODEL = SyntheticModel("synth-d", shards=4, shard_bytes=300_000, seed=41)  # shards carry md5sum
PLAIN = SyntheticModel("synth-p", shards=3, shard_bytes=300_000, seed=42, md5=False)  # sizes only
TWIN = "synth-d-1k"  # MODEL's folder under another id

TIMEOUT_MS = 60_000


@pytest.fixture(scope="module")
def models():
    server = ModelServer(MODEL, PLAIN)
    yield server
    server.close()


def start(page, site, server, *, init_script: str | None = None):
    if init_script:
        page.add_init_script(init_script)
    watch = open_app(page, site, allowed=(server.origin,))
    py = PagePython(page)
    records = [server.record(MODEL), server.record(MODEL, model_id=TWIN, overrides={"context_window_size": 1024}),
               server.record(PLAIN)]
    py(f"""
import asyncio, json
import js
from app import ffi
from app.models.catalog import Catalog
from app.models.manager import ModelManager
from app.backends.webllm import WebLLMBackend
catalog = await Catalog.load(extra=json.loads({json.dumps(json.dumps(records))}))
manager = ModelManager(catalog, WebLLMBackend(app_config=catalog.app_config()))

def mirror(key, model_id):
    def listener(p):
        job = manager._jobs.get(model_id)
        state = {{"phase": p.phase, "bytes": p.bytes_done, "files": p.files_done, "total": p.files_total,
                  "waiting": getattr(p, "waiting", 0), "file_bytes": job.file_bytes if job else {{}}}}
        setattr(js.window, key, js.JSON.parse(json.dumps(state)))
    return listener

async def run(key, model_id):
    try:
        result = (await manager.download(model_id, on_progress=mirror(key, model_id))).phase
    except Exception as exc:
        result = type(exc).__name__
        setattr(js.window, key + "_error", str(exc))
    setattr(js.window, key + "_end", result)

def go(key, model_id):
    setattr(js.window, key + "_end", "")
    asyncio.ensure_future(run(key, model_id))
""")
    return py, watch


def ended(page, key: str) -> str:
    page.wait_for_function(f"() => Boolean(window.{key}_end)", timeout=TIMEOUT_MS)
    return page.evaluate(f"() => window.{key}_end")


def holds_bytes(page, key: str, url: str, n: int, *, rest_done: bool = False) -> None:
    """Wait until download ``key`` holds ``n`` bytes of ``url`` (and, with ``rest_done``, every other file)."""
    page.wait_for_function("""([key, url, n, rest]) => {
        const p = window[key];
        return Boolean(p) && (p.file_bytes[url] || 0) >= n && (!rest || p.files === p.total - 1);
    }""", arg=[key, url, n, rest_done], timeout=TIMEOUT_MS)


def held(page, server, n: int) -> None:
    """Wait until ``n`` responses wait at their ``hold_after`` point (the page asks the server)."""
    page.wait_for_function("""(url) => {
        if (!window.askingHeld) {
            window.askingHeld = fetch(url).then((r) => r.text()).then((t) => { window.held = Number(t); })
                .finally(() => { window.askingHeld = null; });
        }
        return window.held === %d;
    }""" % n, arg=server.url("/__holding"), timeout=TIMEOUT_MS)


def stored_digests(page, urls: list[str]) -> dict[str, str | None]:
    """SHA-256 (hex) of each URL's bytes in web-llm's Cache API stores (None: not stored)."""
    return page.evaluate("""async (urls) => {
        const out = {};
        for (const url of urls) {
            const r = await caches.match(url);
            if (!r) { out[url] = null; continue; }
            const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', await r.arrayBuffer()));
            out[url] = Array.from(digest, (b) => b.toString(16).padStart(2, '0')).join('');
        }
        return out;
    }""", urls)


def served_digests(server, model) -> dict[str, str]:
    return {server.url(p): hashlib.sha256(server.files[p]).hexdigest() for p in model.files}


def in_cache(page, server, record) -> bool:
    config = {"model_list": [record], "cacheBackend": "cache"}
    return page.evaluate("""async ([id, config]) => {
        const w = await import(new URL('static/vendor/web-llm/index.js', document.baseURI).href);
        return await w.hasModelInCache(id, config);
    }""", [record["model_id"], config])


def test_two_tabs_downloading_one_model_fetch_each_file_once_and_the_second_waits(page, site, server):
    """The second tab says "waiting for another tab" (its Cancel works while it waits), then finds the
    files stored: every file crossed the wire once and both tabs end "done" with the server's bytes."""
    shard = MODEL.shard_path(0)
    url = server.url(shard)
    server.hold_after[shard] = 100_000
    py1, watch1 = start(page, site, server)
    page2 = page.context.new_page()
    py2, watch2 = start(page2, site, server)

    py1("go('a', 'synth-d')")
    holds_bytes(page, "a", url, 100_000)
    py2("go('b', 'synth-d')")
    page2.wait_for_function("() => window.b && window.b.phase === 'waiting' && window.b.waiting === 1",
                            timeout=TIMEOUT_MS)
    # Cancel while waiting for the other tab's lock: it ends at once, the first tab goes on.
    py2("manager.cancel('synth-d')")
    assert ended(page2, "b") == "Aborted"
    py2("go('b', 'synth-d')")
    page2.wait_for_function("() => window.b && window.b.phase === 'waiting'", timeout=TIMEOUT_MS)
    assert page.evaluate("() => window.a_end") == ""

    server.release()
    assert ended(page, "a") == "done"
    assert ended(page2, "b") == "done"
    gets = server.body_requests()
    assert {p: gets[p] for p in MODEL.files} == {p: 1 for p in MODEL.files}
    assert sum(server.sent[p] for p in MODEL.files) == MODEL.total_bytes
    assert stored_digests(page2, list(served_digests(server, MODEL))) == served_digests(server, MODEL)
    assert in_cache(page, server, server.record(MODEL)) and in_cache(page2, server, server.record(MODEL))
    assert py2("(await manager.status('synth-d')).state") == "downloaded"
    watch1.assert_clean()
    watch2.assert_clean()


def test_twin_ids_downloading_at_once_in_one_tab_fetch_each_file_once(page, site, server):
    """Two catalog ids of one folder, downloaded at once: one waits for the other's files, none is
    fetched twice, both end "done"."""
    shard = MODEL.shard_path(0)
    server.hold_after[shard] = 100_000
    py, watch = start(page, site, server)
    py(f"go('a', 'synth-d'); go('b', {TWIN!r})")
    page.wait_for_function("() => [window.a, window.b].some((p) => p && p.phase === 'waiting')", timeout=TIMEOUT_MS)
    server.release()
    assert ended(page, "a") == "done"
    assert ended(page, "b") == "done"
    gets = server.body_requests()
    # Each id reads the config and tensor manifest once to plan; every other file is fetched once.
    fetched = [p for p in MODEL.files if not p.endswith((".json",)) or p.endswith("tokenizer.json")]
    assert {p: gets[p] for p in fetched} == {p: 1 for p in fetched}
    assert sum(server.sent[p] for p in fetched) == sum(len(MODEL.files[p]) for p in fetched)
    assert stored_digests(page, list(served_digests(server, MODEL))) == served_digests(server, MODEL)
    assert py(f"[(await manager.status(m)).state for m in ('synth-d', {TWIN!r})]") == ["downloaded", "downloaded"]
    watch.assert_clean()


def test_a_file_changed_on_the_server_between_cancel_and_resume_is_fetched_again_whole(page, site, server):
    """The resume asks with If-Range; the server says the file changed (200), so the staged bytes are
    dropped and the new file is stored whole: never the old bytes stitched to the new."""
    shard = PLAIN.shard_path(1)
    url = server.url(shard)
    server.hold_after[shard] = 200_000
    py, watch = start(page, site, server)
    py("go('a', 'synth-p')")
    holds_bytes(page, "a", url, 200_000, rest_done=True)
    py("manager.cancel('synth-p')")
    assert ended(page, "a") == "Aborted"
    server.release()
    assert py("await ffi.staging_list()").get(url, 0) == 200_000
    old_etag = server.etag(shard)
    new = server.change(shard)

    py("go('a', 'synth-p')")
    assert ended(page, "a") == "done"
    assert (shard, "bytes=200000-", old_etag) in server.range_headers
    assert stored_digests(page, [url]) == {url: hashlib.sha256(new).hexdigest()}
    assert stored_digests(page, list(served_digests(server, PLAIN))) == served_digests(server, PLAIN)
    assert py("await ffi.staging_list()") == {}
    watch.assert_clean()


def test_a_range_of_a_changed_file_sent_despite_if_range_is_not_stitched(page, site, server):
    """A server (or a cache in between) that ignores If-Range answers 206 with the new file's ETag:
    the staged bytes are dropped and the new file is fetched whole."""
    shard = PLAIN.shard_path(2)
    url = server.url(shard)
    server.hold_after[shard] = 100_000
    py, watch = start(page, site, server)
    py("go('a', 'synth-p')")
    holds_bytes(page, "a", url, 100_000, rest_done=True)
    py("manager.cancel('synth-p')")
    assert ended(page, "a") == "Aborted"
    server.release()
    new = server.change(shard, seed=7)
    server.ignore_if_range.add(shard)
    py("go('a', 'synth-p')")
    assert ended(page, "a") == "done"
    assert [h[:2] for h in server.range_headers] == [(shard, "bytes=100000-")]
    assert (shard, 100_000) in server.ranges  # the server did answer the range, of the new file
    assert stored_digests(page, [url]) == {url: hashlib.sha256(new).hexdigest()}
    assert py("await ffi.staging_list()") == {}
    watch.assert_clean()


def test_a_dropped_connection_resumes_with_range_and_if_range_and_fetches_only_the_rest(page, site, server):
    """After the drop, the resume sends Range from the staged offset with the file's ETag as If-Range;
    the 206 is checked and only the missing bytes cross the wire; the resumed file's md5 matches."""
    shard = MODEL.shard_path(2)
    url = server.url(shard)
    server.drop_after[shard] = server.hold_after[shard] = 150_000
    py, watch = start(page, site, server)
    py("go('a', 'synth-d')")
    holds_bytes(page, "a", url, 150_000)
    server.release()
    assert ended(page, "a") == "ModelFetchFailed"
    py("go('a', 'synth-d')")
    assert ended(page, "a") == "done"
    assert server.range_headers == [(shard, "bytes=150000-", server.etag(shard))]
    assert (shard, 150_000) in server.ranges
    assert server.sent[shard] == len(MODEL.files[shard])  # 150 kB, then the rest only
    assert sum(server.sent[p] for p in MODEL.files) == MODEL.total_bytes
    assert stored_digests(page, list(served_digests(server, MODEL))) == served_digests(server, MODEL)
    assert watch.errors == ["Failed to load resource: net::ERR_CONTENT_LENGTH_MISMATCH"]
    watch.errors.clear()
    watch.assert_clean()


def test_a_wrong_content_range_discards_the_staged_part_and_fetches_the_file_again(page, site, server):
    """A 206 whose Content-Range does not start at the staged offset is not stitched: the staged bytes
    are dropped and the file is fetched again from byte 0."""
    shard = PLAIN.shard_path(0)
    url = server.url(shard)
    server.hold_after[shard] = 120_000
    py, watch = start(page, site, server)
    py("go('a', 'synth-p')")
    holds_bytes(page, "a", url, 120_000, rest_done=True)
    py("manager.cancel('synth-p')")
    assert ended(page, "a") == "Aborted"
    server.release()
    server.restart_range.add(shard)
    py("go('a', 'synth-p')")
    assert ended(page, "a") == "done"
    assert [h[:2] for h in server.range_headers] == [(shard, "bytes=120000-")]
    assert server.body_requests()[shard] == 3  # the first try, the wrong 206, the whole file again
    assert stored_digests(page, list(served_digests(server, PLAIN))) == served_digests(server, PLAIN)
    assert py("await ffi.staging_list()") == {}
    watch.assert_clean()


def test_a_shard_whose_bytes_do_not_match_the_manifest_md5_fails_typed_and_stores_nothing_of_it(page, site, server):
    """ChecksumMismatch naming the file; nothing of it is stored or staged; once the server serves
    the right bytes, the download completes."""
    shard = MODEL.shard_path(1)
    url = server.url(shard)
    server.change(shard)  # other bytes, same size; the manifest still names the old md5
    py, watch = start(page, site, server)
    py("go('a', 'synth-d')")
    assert ended(page, "a") == "ChecksumMismatch"
    message = page.evaluate("() => window.a_error")
    assert url in message and "md5" in message
    assert py("type((await manager.status('synth-d')).error).__mro__[1].__name__") == "ModelFetchFailed"
    assert stored_digests(page, [url]) == {url: None}
    assert url not in py("await ffi.staging_list()")
    assert in_cache(page, server, server.record(MODEL)) is False
    # What was stored is whole and right (files already streaming finished; no new one started).
    served = served_digests(server, MODEL)
    stored = {u: d for u, d in stored_digests(page, list(served)).items() if d is not None}
    assert stored and all(served[u] == d for u, d in stored.items()) and url not in stored

    server.reset()  # the right bytes again
    py("go('a', 'synth-d')")
    assert ended(page, "a") == "done"
    assert stored_digests(page, list(served_digests(server, MODEL))) == served_digests(server, MODEL)
    watch.assert_clean()


def stage(page, url: str, parts: list[dict]) -> None:
    """Put staged parts of ``url`` into the app's staging store, as an interrupted download leaves them
    (``bytes`` become the part's Blob)."""
    page.evaluate("""([url, parts]) => new Promise((resolve, reject) => {
        const open = indexedDB.open('webllm-py');
        open.onerror = () => reject(open.error);
        open.onsuccess = () => {
            const tx = open.result.transaction('staging', 'readwrite');
            parts.forEach((part, i) => {
                const {bytes, ...rest} = part;
                tx.objectStore('staging').put({...rest, blob: new Blob([new Uint8Array(bytes)])}, `${url}#${i}`);
            });
            tx.oncomplete = () => { open.result.close(); resolve(); };
            tx.onerror = () => reject(tx.error);
        };
    })""", [url, parts])


def test_staged_parts_of_two_different_downloads_are_never_stitched(page, site, server):
    """Parts left by two downloads of one file (two tabs in a browser without Web Locks) do not make
    one file: the resume drops them and fetches the file whole."""
    shard = PLAIN.shard_path(2)
    url = server.url(shard)
    data = server.files[shard]
    py, watch = start(page, site, server)
    py("await ffi.staging_list()")  # the app has created its database
    common = {"etag": server.etag(shard), "modified": server.last_modified(shard), "total": len(data)}
    stage(page, url, [{**common, "id": "first", "offset": 0, "bytes": list(data[:1000])},
                      {**common, "id": "second", "offset": 1000, "bytes": [0] * 1000}])
    assert py("await ffi.staging_list()") == {url: 2000}
    py("go('a', 'synth-p')")
    assert ended(page, "a") == "done"
    assert server.range_headers == []  # nothing resumed from the mixed parts
    assert server.sent[shard] == len(data)
    assert stored_digests(page, list(served_digests(server, PLAIN))) == served_digests(server, PLAIN)
    assert py("await ffi.staging_list()") == {}
    watch.assert_clean()


NO_WEB_LOCKS = "Object.defineProperty(Navigator.prototype, 'locks', {get: () => undefined, configurable: true});"


def test_without_web_locks_a_download_still_works(page, site, server):
    """A browser without navigator.locks downloads as before (no cross-tab serialising)."""
    py, watch = start(page, site, server, init_script=NO_WEB_LOCKS)
    assert page.evaluate("() => navigator.locks === undefined")
    py("go('a', 'synth-p')")
    assert ended(page, "a") == "done"
    assert stored_digests(page, list(served_digests(server, PLAIN))) == served_digests(server, PLAIN)
    watch.assert_clean()


# Large files go in HTTP Range segments, each read by the browser into a Blob (static/storage.js
# segmentedFile); the app's segment is 8 MiB, so these tests make it 100 kB for 300 kB shards.
SEGMENT = 100_000


def segments(server, shard: str) -> list[str]:
    """The Range headers the page sent for ``shard``, in order."""
    return [asked for path, asked, _ in server.range_headers if path == shard]


def test_a_large_file_comes_in_range_segments_checked_against_the_manifest(page, site, server):
    """Each shard is asked for segment by segment, every byte crosses the wire once, the stored files
    are the server's (their md5 checked), and progress counts the segments as they come."""
    py, watch = start(page, site, server)
    py(f"manager.segment_bytes = {SEGMENT}")
    py("go('a', 'synth-d')")
    assert ended(page, "a") == "done"
    for i in range(MODEL.shards):
        shard = MODEL.shard_path(i)
        size = len(MODEL.files[shard])
        assert segments(server, shard) == [f"bytes={o}-{min(size, o + SEGMENT) - 1}" for o in range(0, size, SEGMENT)]
    assert sum(server.sent[p] for p in MODEL.files) == MODEL.total_bytes
    assert stored_digests(page, list(served_digests(server, MODEL))) == served_digests(server, MODEL)
    assert page.evaluate("() => window.a.bytes") == MODEL.total_bytes
    assert in_cache(page, server, server.record(MODEL)) is True
    watch.assert_clean()


def test_a_cut_between_segments_keeps_them_and_the_resume_asks_for_the_rest_with_if_range(page, site, server):
    """Cancelled while the third segment of a shard is held: the two received are staged, and the
    resume asks from there with If-Range; nothing crosses the wire twice."""
    shard = MODEL.shard_path(1)
    url = server.url(shard)
    server.hold_after[shard] = 2 * SEGMENT
    py, watch = start(page, site, server)
    py(f"manager.segment_bytes = {SEGMENT}")
    py("go('a', 'synth-d')")
    holds_bytes(page, "a", url, 2 * SEGMENT, rest_done=True)
    py("manager.cancel('synth-d')")
    assert ended(page, "a") == "Aborted"
    server.release()
    assert py("await ffi.staging_list()").get(url) == 2 * SEGMENT
    before = len(server.range_headers)

    py("go('a', 'synth-d')")
    assert ended(page, "a") == "done"
    resumed = [h for h in server.range_headers[before:] if h[0] == shard]
    assert resumed[0] == (shard, f"bytes={2 * SEGMENT}-{3 * SEGMENT - 1}", server.etag(shard))
    assert all(h[2] is None for h in resumed[1:])  # If-Range only where staged bytes meet new ones
    assert server.sent[shard] == len(MODEL.files[shard])
    assert stored_digests(page, list(served_digests(server, MODEL))) == served_digests(server, MODEL)
    assert py("await ffi.staging_list()") == {}
    watch.assert_clean()


def test_a_cut_loses_at_most_two_part_read_segments_however_many_large_files_are_due(page, site, server):
    """Four large shards, each held by the server half-way through its second segment: two at a time
    go in segments (the others wait their turn, fetching nothing), so a cancel there loses only the
    half segments of those two; the resume fetches them again and every other byte once."""
    for i in range(MODEL.shards):
        server.hold_after[MODEL.shard_path(i)] = SEGMENT + SEGMENT // 2
    py, watch = start(page, site, server)
    py(f"manager.segment_bytes = {SEGMENT}")
    py("go('a', 'synth-d')")
    held(page, server, 2)
    py("manager.cancel('synth-d')")
    assert ended(page, "a") == "Aborted"
    server.release()
    shards = [MODEL.shard_path(i) for i in range(MODEL.shards)]
    assert sorted(server.sent[p] for p in shards) == [0, 0, SEGMENT + SEGMENT // 2, SEGMENT + SEGMENT // 2]
    py("go('a', 'synth-d')")
    assert ended(page, "a") == "done"
    assert sum(server.sent[p] for p in MODEL.files) - MODEL.total_bytes == 2 * (SEGMENT // 2)
    assert stored_digests(page, list(served_digests(server, MODEL))) == served_digests(server, MODEL)
    assert py("await ffi.staging_list()") == {}
    watch.assert_clean()


def test_a_server_without_ranges_sends_the_file_whole_and_it_is_streamed(page, site, server):
    """A 200 to the first segment's request is the whole file: read as a stream, not asked again."""
    shard = PLAIN.shard_path(0)
    server.ignore_ranges.add(shard)
    py, watch = start(page, site, server)
    py(f"manager.segment_bytes = {SEGMENT}")
    py("go('a', 'synth-p')")
    assert ended(page, "a") == "done"
    assert server.body_requests()[shard] == 1
    assert server.sent[shard] == len(PLAIN.files[shard])
    assert stored_digests(page, list(served_digests(server, PLAIN))) == served_digests(server, PLAIN)
    watch.assert_clean()


def test_a_host_that_hides_content_range_from_the_page_still_gets_segments(page, site, server):
    """Content-Range left out of Access-Control-Expose-Headers (the page reads it as null): each 206
    is taken as the range asked, its length checked, and the files are the server's."""
    server.unexposed.add("Content-Range")
    py, watch = start(page, site, server)
    seen = page.evaluate("""(url) => fetch(url, {headers: {Range: 'bytes=0-9'}, cache: 'no-store'})
        .then((r) => [r.status, r.headers.get('content-range')])""", server.url(MODEL.shard_path(0)))
    assert seen == [206, None]
    server.reset()
    server.unexposed.add("Content-Range")
    py(f"manager.segment_bytes = {SEGMENT}")
    py("go('a', 'synth-d')")
    assert ended(page, "a") == "done"
    shard = MODEL.shard_path(2)
    assert len(segments(server, shard)) == -(-len(MODEL.files[shard]) // SEGMENT)
    assert sum(server.sent[p] for p in MODEL.files) == MODEL.total_bytes
    assert stored_digests(page, list(served_digests(server, MODEL))) == served_digests(server, MODEL)
    watch.assert_clean()


def test_a_file_that_changes_between_segments_is_never_stitched(page, site, server):
    """The file changes on the server while its second segment is on its way: the third segment has
    another ETag, so the segments are dropped and the new file is fetched whole."""
    shard = PLAIN.shard_path(1)
    url = server.url(shard)
    server.change_at[shard] = SEGMENT + 1000
    py, watch = start(page, site, server)
    py(f"manager.segment_bytes = {SEGMENT}")
    py("go('a', 'synth-p')")
    assert ended(page, "a") == "done"
    new = server.files[shard]
    assert new != PLAIN.files[shard]
    assert segments(server, shard) == [f"bytes=0-{SEGMENT - 1}", f"bytes={SEGMENT}-{2 * SEGMENT - 1}",
                                       f"bytes={2 * SEGMENT}-{3 * SEGMENT - 1}"]
    assert server.body_requests()[shard] == 4  # three segments, then the new file whole
    assert stored_digests(page, [url]) == {url: hashlib.sha256(new).hexdigest()}
    assert py("await ffi.staging_list()") == {}
    watch.assert_clean()


def test_a_segmented_shard_whose_md5_does_not_match_stores_nothing_of_it(page, site, server):
    """The segments are hashed (off the page's thread) as they come; a mismatch fails typed and
    nothing of that shard is stored or staged."""
    shard = MODEL.shard_path(3)
    url = server.url(shard)
    server.change(shard)
    py, watch = start(page, site, server)
    py(f"manager.segment_bytes = {SEGMENT}")
    py("go('a', 'synth-d')")
    assert ended(page, "a") == "ChecksumMismatch"
    assert url in page.evaluate("() => window.a_error")
    assert stored_digests(page, [url]) == {url: None}
    assert url not in py("await ffi.staging_list()")
    watch.assert_clean()
