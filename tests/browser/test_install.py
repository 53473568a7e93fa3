"""Chrome offers to install the app: its own manifest and the icons build.py draws, checked by the
browser itself (DevTools: Page.getAppManifest, Page.getInstallabilityErrors), also under a GitHub
Pages sub-path; once installed it starts offline like the page (tests/browser/test_offline.py)."""

from __future__ import annotations

import json
import struct

import pytest

from tests.browser.conftest import CHROMIUM, QUIET_FLAGS, WEBGPU_FLAGS, record_csp_violations
from tests.browser.double import CHAT_MODEL, OVERLAY, app_config
from tests.browser.ui_helpers import open_chat


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


@pytest.fixture
def profile_page(browser_type, tmp_path):
    """A page in a real (persistent) profile: Chrome offers no install in an incognito-like context,
    which is what a test browser's fresh context is."""
    context = browser_type.launch_persistent_context(tmp_path / "profile", executable_path=CHROMIUM,
                                                     args=QUIET_FLAGS + WEBGPU_FLAGS)
    record_csp_violations(context)
    yield context.pages[0] if context.pages else context.new_page()
    context.close()


@pytest.mark.parametrize("prefix", ["/", "/repo-name/"])
def test_chrome_finds_the_app_installable(profile_page, serve, tmp_path, prefix):
    page = profile_page
    config = tmp_path / "chat-config.json"
    site = serve(prefix, overlay={**OVERLAY, "static/chat-config.json": config})
    config.write_text(json.dumps({"model": CHAT_MODEL, "app_config": app_config(site.origin), "offline": "always"}))
    w = open_chat(page, site)
    page.evaluate("() => navigator.serviceWorker.ready.then(() => true)")
    cdp = page.context.new_cdp_session(page)
    manifest = cdp.send("Page.getAppManifest")
    assert manifest["url"] == site.url + "static/manifest.webmanifest" and manifest["errors"] == []
    parsed = json.loads(manifest["data"])
    assert parsed["start_url"] == "../" and parsed["display"] == "standalone"
    assert cdp.send("Page.getInstallabilityErrors")["installabilityErrors"] == []
    # The icons are real PNGs of the sizes the manifest says, served from the site (and from the shell).
    for icon in parsed["icons"]:
        response = page.request.get(site.url + "static/" + icon["src"])
        assert response.ok and response.headers["content-type"] == "image/png"
        width, height = png_size(response.body())
        assert f"{width}x{height}" == icon["sizes"]
    worker = page.request.get(site.url + "sw.js").text()
    assert '"static/manifest.webmanifest"' in worker and '"static/icons/icon-192.png"' in worker
    w.assert_clean()
