"""Images in, for vision models: attach (button, paste, drop), resized in the page, sent as content parts
through web-llm's real worker path (its own validation runs; the engine double decodes each image as
web-llm's pipeline would and says what size it saw), shown as thumbnails, kept in IndexedDB; a
text-only model explains and offers a vision model; the Python API validates and routes the same parts.
"""

from __future__ import annotations

import base64

import pytest

from tests.browser.conftest import READY_TIMEOUT_MS, PagePython, PyError
from tests.browser.double import CHAT_MODEL, VISION_MODEL
from tests.browser.ui_helpers import READ_STORED, answers, open_chat, shot, ui_site
from tests.unit.fakes import make_png

WIDE = make_png(2000, 1000)  # larger than Phi-3.5-vision takes: drawn at 1344 x 672
WIDE_URL = "data:image/png;base64," + base64.b64encode(WIDE).decode()


@pytest.fixture(scope="module")
def vision_site(serve, tmp_path_factory):
    return ui_site(serve, tmp_path_factory.mktemp("vision"), model=VISION_MODEL)


@pytest.fixture(scope="module")
def text_site(serve, tmp_path_factory):
    return ui_site(serve, tmp_path_factory.mktemp("text-only"), model=CHAT_MODEL)


def pick(page, *files):
    """Click the Image button as a user does and choose ``files`` ({name, mimeType, buffer}) in the picker."""
    with page.expect_file_chooser() as chooser:
        page.click("#attach")
    chooser.value.set_files(list(files))


def test_an_attached_image_is_resized_sent_shown_and_kept(page, vision_site):
    w = open_chat(page, vision_site)
    pick(page, {"name": "wide.png", "mimeType": "image/png", "buffer": WIDE},
         {"name": "old.bmp", "mimeType": "image/bmp", "buffer": b"BM" + bytes(60)})
    waiting = page.locator("#attachments img")
    waiting.wait_for()
    assert waiting.count() == 1 and waiting.get_attribute("alt") == "wide.png"
    # The file that cannot go says why; the other is attached all the same.
    assert "old.bmp is image/bmp; PNG, JPEG, WebP and GIF images can be attached" in page.inner_text("#attach-said")
    page.fill("#prompt", "what is this?")
    page.press("#prompt", "Enter")
    reply = answers(page).last
    page.wait_for_selector("#messages .msg-assistant[data-status=done]", timeout=60_000)
    # web-llm accepted the content part; the double decoded the page's resize: 1344 px on the long side.
    assert reply.locator(".body").inner_text() == "Echo: what is this? [image 1344x672]"
    thumb = page.locator("#messages .msg-user .images img")
    assert thumb.count() == 1 and thumb.get_attribute("alt") == "wide.png"
    assert page.locator("#attachments").is_hidden() and page.locator("#attach-why").is_hidden()
    assert page.evaluate("() => document.querySelector('#messages .msg-user .images img').naturalWidth") == 1344
    shot(page, "image-message")
    page.wait_for_function("""() => new Promise(r => { const o = indexedDB.open('webllm-py'); o.onsuccess = () => {
        const g = o.result.transaction('conversations').objectStore('conversations').getAll();
        g.onsuccess = () => { o.result.close(); r(g.result.some(v => v.images && v.images.length)); }; }; })""")
    stored = page.evaluate(READ_STORED)
    image = stored[0]["messages"][0]["images"][0]
    assert (image["name"], image["width"], image["height"]) == ("wide.png", 1344, 672)
    assert image["url"].startswith("data:image/png;base64,")
    assert stored[0]["title"] == "what is this?"  # the title and search know the text, not the image
    page.reload()
    page.wait_for_selector("#chat[data-state=ready]", timeout=READY_TIMEOUT_MS)
    page.locator("#messages .msg-user .images img").wait_for()
    w.assert_clean()


DROP = """([data, name, type, how]) => {
  const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
  const transfer = new DataTransfer();
  transfer.items.add(new File([bytes], name, { type }));
  const composer = document.getElementById('composer');
  if (how === 'paste') {
    document.getElementById('prompt').dispatchEvent(
      new ClipboardEvent('paste', { clipboardData: transfer, bubbles: true, cancelable: true }));
  } else {
    composer.dispatchEvent(new DragEvent('dragover', { dataTransfer: transfer, bubbles: true, cancelable: true }));
    composer.dispatchEvent(new DragEvent('drop', { dataTransfer: transfer, bubbles: true, cancelable: true }));
  }
}"""


def test_paste_and_drop_attach_images_and_remove_takes_one_back(page, vision_site):
    w = open_chat(page, vision_site)
    small = base64.b64encode(make_png(40, 30)).decode()
    page.evaluate(DROP, [small, "dropped.png", "image/png", "drop"])
    page.wait_for_selector("#attachments img[alt='dropped.png']")
    page.evaluate(DROP, [small, "pasted.png", "image/png", "paste"])
    page.wait_for_selector("#attachments img[alt='pasted.png']")
    # A file whose bytes are not the image its type says: refused with why, nothing attached for it.
    page.evaluate(DROP, [base64.b64encode(b"not a png").decode(), "fake.png", "image/png", "drop"])
    page.wait_for_selector("#attach-said:has-text('fake.png could not be read as an image')")
    assert page.locator("#attachments img").count() == 2
    page.click("#attachments button[aria-label='Remove dropped.png']")
    page.wait_for_function("() => document.querySelectorAll('#attachments img').length === 1")
    page.press("#prompt", "Enter")  # images alone can be sent
    page.wait_for_selector("#messages .msg-assistant[data-status=done]", timeout=60_000)
    assert answers(page).last.locator(".body").inner_text() == "Echo: [image 40x30]"  # (rendered: the empty text leaves one space)
    assert page.locator("#messages .msg-user .images img").get_attribute("alt") == "pasted.png"
    w.assert_clean()


def test_a_text_only_model_explains_and_offers_a_vision_model(page, text_site):
    w = open_chat(page, text_site)
    page.click("#attach")  # no picker opens for a model that cannot see images
    said = page.locator("#attach-said")
    said.wait_for()
    page.wait_for_selector("#attach-said:has-text('cannot see images')")
    assert VISION_MODEL in said.inner_text()
    switch = page.locator("#attach-switch")
    assert switch.inner_text() == f"Switch to {VISION_MODEL}"
    shot(page, "image-text-only-model")
    switch.click()
    page.wait_for_selector(f"#attach-said:has-text('{VISION_MODEL} can see images')", timeout=60_000)
    pick(page, {"name": "wide.png", "mimeType": "image/png", "buffer": WIDE})
    page.locator("#attachments img").wait_for()
    w.assert_clean()


def test_the_python_api_validates_images_and_routes_them_only_to_a_model_that_sees(page, text_site):
    w = open_chat(page, text_site)
    run = PagePython(page)
    setup = f"""
from app import session
client = await session.current.client()
IMAGE = {{"type": "image_url", "image_url": {{"url": {WIDE_URL!r}}}}}
def asking(*parts):
    return [{{"role": "user", "content": [*parts, {{"type": "text", "text": "what is this?"}}]}}]
"""
    with pytest.raises(PyError) as info:  # the chosen model is text-only: typed, before the engine
        run(setup + "await client.chat.completions.create(messages=asking(IMAGE))")
    assert info.value.type == "VisionUnavailable" and "cannot see images" in str(info.value)
    for bad, says in (("data:image/svg+xml;base64,PHN2Zz4=", "with type image/png"),
                      ("ftp://example.com/cat.png", "an https URL")):
        with pytest.raises(PyError) as info:
            run(setup + f"await client.chat.completions.create(messages=asking("
                        f"{{'type': 'image_url', 'image_url': {{'url': {bad!r}}}}}))")
        assert info.value.type == "InvalidRequest" and says in str(info.value)
    reply = run(setup + f"""
await session.current.use_model({VISION_MODEL!r})
client = await session.current.client()
reply = await client.chat.completions.create(messages=asking(IMAGE))
[reply.choices[0].message.content, reply.backend]
""")
    # web-llm's worker took the part as given (2000 x 1000: only the page's attach control resizes).
    assert reply == ["Echo: what is this? [image 2000x1000]", "webllm"]
    w.assert_clean()
