"""Model output is untrusted: XSS payloads rendered as answers stay inert.

Every payload's would-be code calls ``xss()``, which counts in ``window.__xss``. Payloads are
rendered by the app's own MessageView (markdown -> DOMPurify -> highlight.js), and a few also go
through the whole chat path (the engine double echoes the prompt as the model's answer).

The page's Content-Security-Policy would stop an inline handler or script that got through (the
second wall, shown by tests/browser/test_csp.py). These tests check the first wall, the renderer,
alone: they serve index.html without its policy, so a payload the renderer let through would run.
(Under the policy, Chromium also reports each handler and style attribute DOMPurify's parser meets
in a payload as a blocked violation, before DOMPurify removes it.)
"""

from __future__ import annotations

import json
import re

import pytest

from tests.browser.conftest import PagePython
from tests.browser.ui_helpers import open_chat, ui_site

EVIL = "http://evil.invalid"
PAYLOADS = [
    # script tags
    "<script>xss()</script>",
    "<SCRIPT SRC=http://evil.invalid/x.js></SCRIPT>",
    "<scr<script>ipt>xss()</scr</script>ipt>",
    "<script type=module>xss()</script>",
    "<<script>xss();//<</script>",
    # event handlers
    "<img src=x onerror=xss()>",
    "<img src=x onerror=\"xss()\">",
    "<IMG SRC=# onmouseover=\"xss()\">",
    "<body onload=xss()>",
    "<div onclick=xss()>click</div>",
    "<details open ontoggle=xss()>",
    "<input autofocus onfocus=xss()>",
    "<select autofocus onfocus=xss()>",
    "<textarea autofocus onfocus=xss()>",
    "<video><source onerror=xss()></video>",
    "<audio src=x onerror=xss()>",
    "<marquee onstart=xss()>x</marquee>",
    "<img src=\"x\" o\\nnerror=xss()>",
    "<a onmouseover=xss() href=#>hover</a>",
    "<p onpointerenter=xss()>enter</p>",
    # javascript: URLs
    "<a href=\"javascript:xss()\">click</a>",
    "<a href=\"JaVaScRiPt:xss()\">click</a>",
    "<a href=\"&#106;avascript:xss()\">entity</a>",
    "<a href=\"java\tscript:xss()\">tab</a>",
    "<a href=\" javascript:xss()\">space</a>",
    "<iframe src=\"javascript:xss()\"></iframe>",
    "<form action=\"javascript:xss()\"><button>go</button></form>",
    "<button formaction=\"javascript:xss()\">go</button>",
    "<object data=\"javascript:xss()\"></object>",
    "<embed src=\"javascript:xss()\">",
    # markdown link and image tricks
    "[click me](javascript:xss())",
    "[click me](JAVASCRIPT:xss())",
    "[click me](javascript&#58;xss())",
    "[a](javascript:xss&#40;&#41;)",
    "![img](x\" onerror=\"xss())",
    "[x](https://example.invalid\" onclick=\"xss())",
    "<javascript:xss()>",
    "[ref]\n\n[ref]: javascript:xss()",
    "![tracker](http://evil.invalid/pixel.png)",
    "[link](<javascript:xss()>)",
    # data: URLs
    "<a href=\"data:text/html,<script>xss()</script>\">data</a>",
    "[data](data:text/html;base64,PHNjcmlwdD54c3MoKTwvc2NyaXB0Pg==)",
    "<iframe src=\"data:text/html,<script>parent.xss()</script>\"></iframe>",
    "<object data=\"data:text/html,<script>parent.xss()</script>\"></object>",
    "<img src=\"data:image/svg+xml,<svg onload=xss()>\">",
    # SVG and MathML
    "<svg onload=xss()>",
    "<svg><script>xss()</script></svg>",
    "<svg><a xlink:href=\"javascript:xss()\"><text y=20>x</text></a></svg>",
    "<svg><animate onbegin=xss() attributeName=x dur=1s>",
    "<svg><set attributeName=onmouseover to=xss()>",
    "<math><mtext><table><mglyph><style><img src=x onerror=xss()>",
    "<svg><foreignObject><img src=x onerror=xss()></foreignObject></svg>",
    # style tricks and other markup
    "<style>@import 'http://evil.invalid/x.css';</style>",
    "<div style=\"position:fixed;inset:0;background:red\">overlay</div>",
    "<div style=\"background:url(javascript:xss())\">bg</div>",
    "<link rel=stylesheet href=http://evil.invalid/x.css>",
    "<meta http-equiv=refresh content=\"0;url=javascript:xss()\">",
    "<base href=\"javascript:xss()//\">",
    "<table background=\"http://evil.invalid/bg.png\"><tr><td>x</td></tr></table>",
    "<noscript><p title=\"</noscript><img src=x onerror=xss()>\">",
    "<template><img src=x onerror=xss()></template>",
    "<a href=\"#\" data-action=\"delete\" data-id=\"x\">app action</a>",
    "<img src=x id=prompt name=send onerror=xss()>",
    "```html\n<script>xss()</script>\n```",
    "`<img src=x onerror=xss()>`",
    # dressed as a formula KaTeX rendered (static/math.js), or as its slot (whose nonce is random)
    "<span class=\"katex\"><span class=\"strut\" style=\"height:100em;position:fixed\" onclick=xss()>forged</span></span>",
    "<span class=\"math-00000000000000000000000000000000-0\"><img src=x onerror=xss()></span>",
]

CHECK = """
() => {
  const root = document.getElementById('xss-area');
  const bad = [];
  // What the model wrote: the bodies of the messages (the app's own buttons are not model output).
  for (const el of root.querySelectorAll('.body *')) {
    // The app's own Copy button on each code block, and its wrapper (static/render.js adds them after
    // sanitizing): not model output.
    if (el.matches('div.code-block, div.code-block > button.copy-code:first-child')) continue;
    for (const attr of el.attributes) {
      const value = attr.value.replace(/[\\s\\u0000-\\u001f]/g, '').toLowerCase();
      if (attr.name.startsWith('on')) bad.push(el.tagName + ' ' + attr.name);
      if (['href', 'src', 'action', 'formaction', 'xlink:href', 'data', 'background', 'poster'].includes(attr.name)
          && (value.startsWith('javascript:') || value.startsWith('data:text') || value.startsWith('http://evil')))
        bad.push(el.tagName + ' ' + attr.name + '=' + attr.value);
      // data-* could trigger the app's delegated actions; highlight.js marks its own work (data-highlighted).
      if (['style', 'id', 'name'].includes(attr.name) || (attr.name.startsWith('data-') && attr.name !== 'data-highlighted'))
        bad.push(el.tagName + ' ' + attr.name);
    }
    if (['SCRIPT', 'IFRAME', 'OBJECT', 'EMBED', 'SVG', 'MATH', 'STYLE', 'LINK', 'META', 'BASE', 'FORM', 'INPUT',
         'BUTTON', 'TEXTAREA', 'SELECT', 'VIDEO', 'AUDIO', 'TEMPLATE'].includes(el.tagName.toUpperCase()))
      bad.push('element ' + el.tagName);
  }
  return bad;
}
"""

TRAP = "() => { window.__xss = 0; window.xss = () => { window.__xss += 1; }; }"


@pytest.fixture(scope="session")
def xss_site(serve, tmp_path_factory, dist):
    folder = tmp_path_factory.mktemp("xss")
    html = (dist / "index.html").read_text()
    without_policy = re.sub(r'\s*<meta http-equiv="Content-Security-Policy"[^>]*>', "", html)
    assert without_policy != html
    (folder / "index.html").write_text(without_policy)
    return ui_site(serve, folder, overlay={"": folder / "index.html", "index.html": folder / "index.html"})


def test_trap_counts_a_live_handler(page, xss_site):
    """The trap works: the same markup inserted raw (not through the renderer) does run."""
    open_chat(page, xss_site)
    page.evaluate(TRAP)
    page.evaluate("() => { const d = document.createElement('div'); d.innerHTML = '<img src=x onerror=xss()>';"
                  " document.body.append(d); }")
    page.wait_for_function("() => window.__xss === 1")


def test_payloads_rendered_as_answers_are_inert(page, xss_site):
    assert len(PAYLOADS) >= 50
    w = open_chat(page, xss_site)
    page.evaluate(TRAP)
    py = PagePython(page)
    rendered = py(f"""
from app import ffi
from app.ui.chat import Message
from app.ui.view import MessageView
area = ffi.element("ol", attrs={{"id": "xss-area"}})
ffi.append(ffi.node("chat"), area)
views = []
for i, text in enumerate({json.dumps(PAYLOADS)}):
    view = MessageView(Message("assistant", text, meta={{"backend": "double"}}), None, area)
    ffi.append(area, view.root)
    views.append(view)
len(views)
""")
    assert rendered == len(PAYLOADS)
    page.wait_for_function(f"() => document.querySelectorAll('#xss-area [data-rendered=markdown]').length === {len(PAYLOADS)}")
    # Let anything asynchronous (image errors, focus, animations) happen: a control image with a
    # live handler, inserted after every payload, must have fired before we look.
    page.evaluate("() => { window.__control = 0; const img = new Image(); img.onerror = () => window.__control++;"
                  " img.src = 'data:image/png;base64,broken'; document.getElementById('xss-area').append(img); }")
    page.wait_for_function("() => window.__control === 1")
    page.evaluate("document.getElementById('xss-area').lastChild.remove()")
    assert page.evaluate("window.__xss") == 0
    assert page.evaluate(CHECK) == []
    # Hovering and clicking rendered links runs nothing and leaves the page where it is.
    for link in page.locator("#xss-area a").all()[:10]:
        link.hover()
    assert page.evaluate("window.__xss") == 0
    # Markup became text or was dropped, and code blocks show the code as text.
    code = page.locator("#xss-area code", has_text="<script>xss()</script>")
    assert code.count() == 1
    # the only buttons in answers are the app's Copy buttons, one per code block
    assert page.locator("#xss-area .body button").count() == page.locator("#xss-area .body pre").count() == 1
    assert page.locator("#xss-area", has_text="[image: tracker]").count() == 1
    w.assert_clean()  # no request left the origin (remote images, stylesheets, scripts)


def test_payloads_through_the_chat_stay_inert(page, xss_site):
    w = open_chat(page, xss_site)
    page.evaluate(TRAP)
    prompt = page.locator("#prompt")
    text = " ".join(["<img src=x onerror=xss()>", "[x](javascript:xss())", "<svg onload=xss()>",
                     "<a href=\"javascript:xss()\">y</a>", "<script>xss()</script>"])
    prompt.fill(text)
    prompt.press("Enter")
    page.locator("#messages .msg-assistant[data-rendered=markdown]").wait_for()
    page.evaluate("() => { window.__control = 0; const img = new Image(); img.onerror = () => window.__control++;"
                  " img.src = 'data:image/png;base64,broken'; document.getElementById('messages').append(img); }")
    page.wait_for_function("() => window.__control === 1")
    assert page.evaluate("window.__xss") == 0
    # Your own message is shown as the text you typed.
    assert page.locator("#messages .msg-user .body").inner_text() == text
    page.evaluate("document.getElementById('messages').lastChild.remove(); "
                  "document.getElementById('messages').id = 'xss-area'")
    assert page.evaluate(CHECK) == []
    w.assert_clean()


def test_answers_cannot_wear_the_apps_classes_and_only_named_short_code_is_highlighted(page, xss_site):
    w = open_chat(page, xss_site)
    big = "x = 1\n" * 10_000  # 60 KB with no language named: highlight.js would guess over all of it
    texts = ['<p class="notice msg-assistant">System: your session expired</p>',
             '<span class="visually-hidden">hidden</span> <a class="bar" href="https://x.test">x</a>',
             "```\n" + big + "```", "```python\nprint('hi')\n```", '```"><b class="notice">\ncode\n```']
    py = PagePython(page)
    py(f"""
from app import ffi
from app.ui.chat import Message
from app.ui.view import MessageView
area = ffi.element("ol", attrs={{"id": "class-area"}})
ffi.append(ffi.node("chat"), area)
for text in {json.dumps(texts)}:
    ffi.append(area, MessageView(Message("assistant", text), None, area).root)
""")
    page.wait_for_function(f"() => document.querySelectorAll('#class-area [data-rendered=markdown]').length === {len(texts)}")
    classes = page.evaluate("""() => [...document.querySelectorAll('#class-area .body *')]
        .filter((el) => el.hasAttribute('class') && !el.closest('pre'))
        .filter((el) => !el.matches('div.code-block, div.code-block > button.copy-code:first-child'))  // the app's
        .map((el) => el.tagName + '.' + el.className)""")
    assert classes == []  # nothing outside code blocks keeps a class: no fake notices or hidden text
    blocks = page.evaluate("""() => [...document.querySelectorAll('#class-area pre > code')]
        .map((c) => ({cls: c.className, spans: c.querySelectorAll('span').length, len: c.textContent.length}))""")
    unnamed, named, odd = blocks
    assert unnamed == {"cls": "", "spans": 0, "len": len(big)}  # shown whole, as plain text
    assert "hljs" in named["cls"] and "language-python" in named["cls"] and named["spans"] > 0
    assert odd["spans"] == 0 and "notice" not in odd["cls"]
    w.assert_clean()
