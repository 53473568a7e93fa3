"""A deploy while the app is open: every tab runs one app version from start to end (static/sw.js).

Two releases of the site are made from the build (dist/): the same files with the config turning the
service worker on, and the second one changed (a marker in index.html, app.zip and the lazily imported
static/render.js), each with its own sw.js written by the build's own step (build.service_worker: its
file list and version digest), so the second is a new version the browser installs. One server on one
origin serves either; "deploying" swaps what it serves.

What a tab sees, by design:
- a tab open during the deploy keeps running its version: every shell file it fetches afterwards,
  lazily imported modules included, is its own version's, also once another tab let the new version
  take over; it says "A new version is ready" with "Reload to update", which puts it on the new one;
- a page that starts while the new version waits (a new tab, a plain reload) runs the new version,
  even with an old tab open (the old tab keeps its own) and however long the browser takes to let
  the new worker take over: the old worker serves it the new version, without a second load;
- the new version's files stay in the browser from then on, so it starts without the site too.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import threading
import zipfile
from pathlib import Path

import pytest

import build
from tests.browser.conftest import READY_TIMEOUT_MS, watch

RELEASE_META = '<meta name="release" content="{}">'


def make_release(dist: Path, dest: Path, marker: str | None) -> Path:
    """dist/ copied to ``dest`` with the service worker on; ``marker`` changes index.html, app.zip and
    static/render.js. sw.js is written again the way the build writes it (a new version digest)."""
    shutil.copytree(dist, dest, ignore=shutil.ignore_patterns(".stamp"))
    config = json.loads((dest / "static/chat-config.json").read_text())
    (dest / "static/chat-config.json").write_text(json.dumps({**config, "offline": "always"}))
    if marker is not None:
        index = dest / "index.html"
        index.write_text(index.read_text().replace("<head>", "<head>\n  " + RELEASE_META.format(marker), 1))
        with zipfile.ZipFile(dest / "app.zip", "a") as zf:
            zf.writestr("app/RELEASE.txt", marker)
        render = dest / "static/render.js"
        render.write_text(render.read_text() + f'\nexport const RELEASE = "{marker}";\n')
    (dest / "sw.js").unlink()
    shutil.copy2(build.ROOT / "static/sw.js", dest / "static/sw.js")
    build.service_worker(dest)
    return dest


@pytest.fixture(scope="module")
def releases(dist, tmp_path_factory):
    root = tmp_path_factory.mktemp("releases")
    return make_release(dist, root / "v1", None), make_release(dist, root / "v2", "v2")


class DeployedFiles(build.StaticHandler):
    """Serves what is deployed now (a kept-alive connection outlives a deploy), and never "304 Not
    Modified": HTTP dates count whole seconds, and the test deploys the second release within the
    second it was made (a browser checking sw.js would be told it is unchanged)."""

    def __init__(self, *args, deployment: Deployment, **kw):
        self.deployment = deployment
        super().__init__(*args, directory=str(deployment.root), **kw)

    def send_head(self):
        if self.path.split("?")[0] in self.deployment.held:
            self.deployment.release.wait(READY_TIMEOUT_MS / 1000)
        self.directory = str(self.deployment.root)
        del self.headers["If-Modified-Since"]
        return super().send_head()


class Deployment:
    """One origin on 127.0.0.1 serving one release at a time; ``deploy(folder)`` swaps it. A request
    for a path in ``held`` gets no answer until ``release`` is set."""

    def __init__(self, root: Path):
        self.root = root
        self.held: set[str] = set()
        self.release = threading.Event()
        self.server = build.Server(("127.0.0.1", 0), lambda *a: DeployedFiles(*a, deployment=self))
        build.start_in_thread(self.server)
        self.origin = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.url = self.origin + "/"

    def deploy(self, root: Path) -> None:
        self.root = root

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def deployment(releases):
    deployment = Deployment(releases[0])
    yield deployment
    deployment.close()


def shell(folder: Path) -> dict:
    """What a page of this release should get for a few shell files."""
    return {"index": (folder / "index.html").read_text(),
            "render": (folder / "static/render.js").read_text(),
            "zip": hashlib.sha256((folder / "app.zip").read_bytes()).hexdigest()}


# Fetched by the page itself, so through its service worker, as its own code would.
SHELL_SEEN = """async () => {
  const get = (path) => fetch(new URL(path, document.baseURI));
  const zip = await (await get('app.zip')).arrayBuffer();
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', zip));
  return {index: await (await get('index.html')).text(), render: await (await get('static/render.js')).text(),
          zip: Array.from(digest, (b) => b.toString(16).padStart(2, '0')).join('')};
}"""
# The page's first import of the lazily loaded renderer: the module the app itself would get.
RENDERER_RELEASE = "() => import(new URL('static/render.js', document.baseURI).href).then((m) => m.RELEASE || 'v1')"
RELEASE_IS = "(release) => (document.querySelector('meta[name=release]')?.content || 'v1') === release"


def forget_cut_imports(w) -> None:
    """A tab that takes the waiting version reloads itself while its old document is still starting:
    a module import that reload cut short is logged by the discarded document, not by the version the
    tab then runs."""
    w.errors[:] = [e for e in w.errors if not e.startswith("Failed to fetch dynamically imported module")]


def on_release(page, release: str) -> None:
    """Wait until the page runs ``release`` (a page may reload itself onto it) and has mounted."""
    page.wait_for_function(RELEASE_IS, arg=release, timeout=READY_TIMEOUT_MS)
    page.wait_for_selector("body[data-state=ready]", timeout=READY_TIMEOUT_MS)
    page.wait_for_selector("#chat[data-state=ready]", timeout=READY_TIMEOUT_MS)


def open_controlled(page, site) -> object:
    """The app, opened and then reloaded so that its service worker controls the page."""
    w = watch(page, site.origin)
    page.goto(site.url)
    on_release(page, "v1")
    page.evaluate("() => navigator.serviceWorker.ready.then(() => true)")
    page.reload()
    on_release(page, "v1")
    assert page.evaluate("() => navigator.serviceWorker.controller !== null")
    return w


def deploy_and_notice(page, site, folder: Path) -> None:
    """Deploy ``folder``; the open page looks for a new worker (as on a navigation, or when shown
    again) and says a new version is ready."""
    site.deploy(folder)
    page.evaluate("() => navigator.serviceWorker.getRegistration().then((r) => r.update()).then(() => true)")
    page.wait_for_selector("#app-notice:not([hidden])", timeout=READY_TIMEOUT_MS)
    assert page.inner_text("#app-notice-text") == "A new version is ready."
    assert page.inner_text("#app-notice-reload") == "Reload to update"


def deploy_and_open_a_second_tab(page, site, folder: Path):
    """A tab on the old version, ``folder`` deployed, then a second tab opened: it is served the new
    version at once, loaded once (no reload), and asks the waiting worker to take over (which hands
    the first tab to the new worker too, when the browser lets it). Returns both tabs' watchers and
    the second page."""
    w = open_controlled(page, site)
    deploy_and_notice(page, site, folder)
    second = page.context.new_page()
    w2 = watch(second, site.origin)
    loads = []
    second.on("load", lambda p: loads.append(p.url))
    second.goto(site.url)
    on_release(second, "v2")
    assert loads == [site.url]  # before: the old version first, then a reload
    return w, second, w2


@pytest.mark.parametrize("how", ["button", "plain reload"])
def test_an_open_tab_keeps_its_version_after_a_deploy_and_takes_the_new_one_on_reload(page, deployment, releases, how):
    """A tab open during a deploy keeps running its version (every file it loads afterwards is its
    own) and says "A new version is ready"; Reload to update, or a plain reload, puts it on the new one."""
    v1, v2 = releases
    site = deployment
    w = open_controlled(page, site)
    deploy_and_notice(page, site, v2)

    assert page.evaluate(SHELL_SEEN) == shell(v1)  # today: v2's, served into a v1 page
    assert page.evaluate(RENDERER_RELEASE) == "v1"

    if how == "button":
        with page.expect_navigation():
            page.click("#app-notice-reload")
    else:
        page.reload()  # the old worker answers the reload; the page then takes the waiting version
    on_release(page, "v2")
    forget_cut_imports(w)
    assert page.evaluate(SHELL_SEEN) == shell(v2)
    assert page.evaluate(RENDERER_RELEASE) == "v2"
    assert page.is_hidden("#app-notice")
    w.assert_clean()


def test_a_new_tab_takes_the_new_version_while_the_old_tab_keeps_its_own(page, deployment, releases):
    """A tab opened after a deploy runs the new version at once, while a tab open since before keeps
    running the old one (now served by the new worker from the old version's cache, its engine worker
    too) and offers the update; its reload then lands on the new version."""
    v1, v2 = releases
    w, second, w2 = deploy_and_open_a_second_tab(page, deployment, v2)
    assert second.evaluate(SHELL_SEEN) == shell(v2)
    assert second.evaluate(RENDERER_RELEASE) == "v2"
    assert second.is_hidden("#app-notice")

    # The first tab is now controlled by the new worker, and still gets its own version's files.
    assert page.evaluate(SHELL_SEEN) == shell(v1)
    assert page.evaluate(RENDERER_RELEASE) == "v1"
    assert page.is_visible("#app-notice")
    assert page.inner_text("#app-notice-reload") == "Reload to update"
    # So does the engine worker it starts now (static/webllm-worker.js, as static/bridge/engine.js does).
    with page.expect_worker() as started:
        page.evaluate("() => { window.engineWorker = new Worker("
                      "new URL('static/webllm-worker.js', document.baseURI), {type: 'module'}); }")
    assert started.value.evaluate("() => fetch('../index.html').then((r) => r.text())") == shell(v1)["index"]
    page.evaluate("() => window.engineWorker.terminate()")

    with page.expect_navigation():
        page.click("#app-notice-reload")
    on_release(page, "v2")
    assert page.evaluate(SHELL_SEEN) == shell(v2)
    assert page.is_hidden("#app-notice")
    w.assert_clean()
    forget_cut_imports(w2)
    w2.assert_clean()


def test_a_page_the_old_version_served_after_the_new_one_took_over_reloads_onto_it(page, deployment, releases):
    """The race a plain reload can lose: the old worker serves the page, then the new worker takes over
    (the old page unloading lets it) before the page's first script runs, so nothing waits any more and
    the page's controller is already the new worker. The page asks that worker which version served it
    and reloads onto the new one."""
    v1, v2 = releases
    w, second, w2 = deploy_and_open_a_second_tab(page, deployment, v2)  # the first is now the new worker's
    version = "() => fetch(new URL('__version', document.baseURI)).then((r) => r.json())"
    seen = page.evaluate(version)
    assert seen["page"] != seen["current"] and seen["current"] == second.evaluate(version)["page"]

    with page.expect_navigation():  # what boot.js runs first in a page that starts now
        page.evaluate("() => pyBridge.page.takeWaitingVersion()")
    on_release(page, "v2")
    assert page.evaluate(SHELL_SEEN) == shell(v2)
    seen = page.evaluate(version)
    assert seen["page"] == seen["current"]
    w.assert_clean()
    forget_cut_imports(w2)
    w2.assert_clean()


def test_a_tab_opened_while_a_new_version_waits_starts_it_again_without_the_site(page, deployment, releases, tmp_path):
    """The new version's files are kept from its install on: a tab opened while it waits (served by
    the old worker, which used to delete the newer version's cache as unused) reloads into the new
    version with the site gone, every file from the browser."""
    v1, v2 = releases
    w, second, w2 = deploy_and_open_a_second_tab(page, deployment, v2)
    gone = tmp_path / "gone"
    gone.mkdir()
    deployment.deploy(gone)  # every request to the site now gets 404
    second.reload()
    on_release(second, "v2")
    assert second.evaluate(SHELL_SEEN) == shell(v2)
    assert second.evaluate(RENDERER_RELEASE) == "v2"
    assert page.evaluate(SHELL_SEEN) == shell(v1)  # the old tab, too, still has all of its own
    w.assert_clean()
    forget_cut_imports(w2)
    w2.assert_clean()


def test_reload_to_update_lands_on_the_new_version_while_the_old_worker_stays_busy(page, deployment, releases):
    """The browser lets a waiting worker take over only once the old one is idle. With the old worker
    kept busy (a shell file missing from its cache, asked for through it, that the server does not
    answer), "Reload to update" still lands on the new version: the page reloads after a short wait
    and the old worker serves it the new version."""
    v1, v2 = releases
    w = open_controlled(page, deployment)
    deploy_and_notice(page, deployment, v2)
    deployment.held.add("/static/render.js")
    page.evaluate("""async () => {
      const name = (await (await fetch(new URL('__version', document.baseURI))).json()).page;  // v1's
      await (await caches.open(name)).delete(new URL('static/render.js', document.baseURI).href);
      window.busy = fetch(new URL('static/render.js', document.baseURI)).catch(() => null);
    }""")
    with page.expect_navigation():
        page.click("#app-notice-reload")
    on_release(page, "v2")
    deployment.release.set()
    assert page.evaluate(SHELL_SEEN) == shell(v2)
    assert page.is_hidden("#app-notice")
    forget_cut_imports(w)
    w.assert_clean()
