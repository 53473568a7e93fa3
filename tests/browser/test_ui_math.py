"""Math in answers (KaTeX) and the Copy button of code blocks, in real Chromium under the page's policy.

Answers are rendered by the app's own MessageView (markdown -> DOMPurify -> KaTeX/highlight.js), as
in test_ui_xss.py, but on the page as shipped: its Content-Security-Policy is in force, and any
violation fails the test (conftest.py). One test goes through the whole chat (the engine double
echoes the prompt as the model's answer) to show that KaTeX is loaded only when an answer has math.
"""

from __future__ import annotations

import json

import pytest

from tests.browser.conftest import CSP_VIOLATIONS, PagePython
from tests.browser.ui_helpers import answers, open_chat, ui_site

KATEX_FILES = ("static/math.js", "static/vendor/katex/katex.mjs", "static/vendor/katex/katex.min.css")

# What the model wrote may carry no class, style, id, data-* or link except: KaTeX's own subtree
# (classes katex.min.css styles or "katex-*", none of them a class of the app's stylesheet; styles
# only KaTeX's layout properties with bounded numeric lengths; no links or images), a code block's
# classes (language-x, highlight.js), and the app's own Copy button and its wrapper.
CHECK = """
(area) => {
  const classesOf = (suffix) => {
    const sheet = [...document.styleSheets].find((s) => s.href && s.href.endsWith(suffix));
    const names = new Set();
    const walk = (rules) => { for (const r of rules) {
      if (r.selectorText) for (const m of r.selectorText.matchAll(/\\.([A-Za-z][\\w-]*)/g)) names.add(m[1]);
      if (r.cssRules) walk(r.cssRules); } };
    if (sheet) walk(sheet.cssRules);
    return names;
  };
  const katexCss = classesOf('vendor/katex/katex.min.css'), appCss = classesOf('static/app.css');
  const STYLE = new Set(['height', 'width', 'min-width', 'vertical-align', 'top', 'bottom', 'left', 'margin-left',
    'margin-right', 'margin-top', 'padding-left', 'border-bottom-width', 'border-right-width', 'border-top-width']);
  const bad = [];
  if (!appCss.size) bad.push('app.css not found');
  for (const el of document.getElementById(area).querySelectorAll('.body *')) {
    const tag = el.tagName.toLowerCase();
    const inKatex = !!el.closest('.katex, .katex-display, .katex-error');
    const appOwn = el.matches('div.code-block, div.code-block > button.copy-code:first-child');
    for (const attr of el.attributes) {
      const value = attr.value.replace(/[\\s\\u0000-\\u001f]/g, '').toLowerCase();
      if (attr.name.startsWith('on')) bad.push(tag + ' ' + attr.name);
      if (value.includes('javascript:') || value.includes('evil.invalid')) bad.push(tag + ' ' + attr.name + '=' + attr.value);
      if (['id', 'name', 'href', 'src', 'xlink:href', 'action', 'formaction'].includes(attr.name)
          || (attr.name.startsWith('data-') && attr.name !== 'data-highlighted')) bad.push(tag + ' ' + attr.name);
    }
    for (const c of (el.getAttribute('class') || '').split(/\\s+/).filter(Boolean)) {
      // (app.css styles katex-display and katex-error itself: those are KaTeX's, not the interface's)
      const ok = appOwn || (inKatex ? /^katex(-[a-z]+)*$/.test(c) || (katexCss.has(c) && !appCss.has(c))
                                    : !!el.closest('pre'));
      if (!ok) bad.push(tag + '.' + c);
    }
    if (el.hasAttribute('style')) {
      if (!el.closest('.katex, .katex-error')) bad.push(tag + ' style outside KaTeX: ' + el.getAttribute('style'));
      for (let i = 0; i < el.style.length; i++) {
        const prop = el.style.item(i), value = el.style.getPropertyValue(prop);
        const m = /^(-?[\\d.]+)(em|ex|px|%)$/.exec(value);
        if (!STYLE.has(prop) || !m || Math.abs(parseFloat(m[1])) > 100) bad.push(tag + ' style ' + prop + ': ' + value);
      }
    }
    if (['a', 'img', 'image', 'use', 'foreignobject', 'style', 'script', 'iframe', 'object', 'embed', 'form',
         'input', 'textarea', 'select', 'link', 'meta', 'base'].includes(tag)) bad.push('element ' + tag);
    if (tag === 'button' && !appOwn) bad.push('a button the app did not add');
    if (!inKatex && ['math', 'svg'].includes(tag)) bad.push('element ' + tag + ' outside KaTeX');
  }
  return bad;
}
"""

TRAP = "() => { window.__xss = 0; window.xss = () => { window.__xss += 1; }; }"


@pytest.fixture(scope="module")
def math_site(serve, tmp_path_factory):
    return ui_site(serve, tmp_path_factory.mktemp("math"))


def render(page, texts: list[str], area: str) -> None:
    """Show ``texts`` as assistant answers in a new list ``#area`` and wait until all are rendered."""
    PagePython(page)(f"""
from app import ffi
from app.ui.chat import Message
from app.ui.view import MessageView
area = ffi.element("ol", attrs={{"id": {json.dumps(area)}}})
ffi.append(ffi.node("chat"), area)
for text in {json.dumps(texts)}:
    ffi.append(area, MessageView(Message("assistant", text), None, area).root)
""")
    page.wait_for_function(f"() => document.querySelectorAll('#{area} [data-rendered=markdown]').length"
                           f" === {len(texts)}")


def per_answer(page, area: str, js: str):
    """``js`` is a function of one answer's body element; its result for each answer, in order."""
    return page.evaluate(f"() => [...document.querySelectorAll('#{area} .body')].map({js})")


def katex_requests(requests: list[str]) -> list[str]:
    return [r for r in requests if any(name in r for name in KATEX_FILES) or "/katex/" in r]


def test_inline_and_display_math_are_rendered_by_katex(page, math_site):
    w = open_chat(page, math_site)
    texts = [
        "Euler: $e^{i\\pi} + 1 = 0$ and \\(a^2 + b^2 = c^2\\).",
        "$$\\int_0^1 x\\,dx = \\frac{1}{2}$$\n\nand\n\n\\[\n\\sum_{n=1}^\\infty \\frac{1}{n^2} = \\frac{\\pi^2}{6}\n\\]",
        # SVG-drawn parts (an accent, a root, tall delimiters): KaTeX gives their <svg> a style attribute
        "$\\vec v$, $\\sqrt{2}$ and $\\left(\\begin{matrix}1\\\\2\\\\3\\\\4\\end{matrix}\\right)$ with **bold**",
    ]
    render(page, texts, "math-area")
    shown = per_answer(page, "math-area", """(b) => ({
        inline: [...b.querySelectorAll('.katex')].filter((k) => !k.closest('.katex-display'))
                  .map((k) => k.querySelector('annotation[encoding="application/x-tex"]').textContent),
        display: [...b.querySelectorAll('.katex-display .katex annotation')].map((a) => a.textContent),
        mathml: b.querySelectorAll('.katex-mathml math').length,
        errors: b.querySelectorAll('.katex-error').length,
        text: b.textContent})""")
    assert [s["inline"] for s in shown] == [["e^{i\\pi} + 1 = 0", "a^2 + b^2 = c^2"], [],
                                            ["\\vec v", "\\sqrt{2}",
                                             "\\left(\\begin{matrix}1\\\\2\\\\3\\\\4\\end{matrix}\\right)"]]
    assert shown[1]["display"] == ["\\int_0^1 x\\,dx = \\frac{1}{2}",
                                   "\\sum_{n=1}^\\infty \\frac{1}{n^2} = \\frac{\\pi^2}{6}"]
    assert [s["mathml"] for s in shown] == [2, 2, 3] and [s["errors"] for s in shown] == [0, 0, 0]
    assert "$" not in shown[0]["text"] and "\\(" not in shown[0]["text"]
    assert page.locator("#math-area strong", has_text="bold").count() == 1  # markdown around math still works
    # KaTeX's layout reached the page (through CSSOM: no style attribute was ever parsed), its
    # stylesheet applies and its fonts load from the site.
    layout = page.evaluate("""() => {
        const strut = document.querySelector('#math-area .katex .strut');
        const katex = document.querySelector('#math-area .katex');
        return {height: strut.style.height, computed: parseFloat(getComputedStyle(strut).height),
                font: getComputedStyle(katex).fontFamily,
                svgs: document.querySelectorAll('#math-area .katex svg path').length};
    }""")
    assert layout["height"].endswith("em") and layout["computed"] > 0
    assert "KaTeX_Main" in layout["font"] and layout["svgs"] >= 2
    loaded = page.evaluate("() => document.fonts.ready.then(() => [...document.fonts]"
                           ".filter((f) => f.family.includes('KaTeX') && f.status === 'loaded').length)")
    assert loaded > 0
    assert any(r.endswith(".woff2") and "/static/vendor/katex/fonts/" in r for r in w.requests)
    assert page.evaluate(CHECK, "math-area") == []
    w.assert_clean()  # no console error, nothing from elsewhere, no policy violation


def test_dollars_in_text_and_math_in_code_stay_literal(page, math_site):
    w = open_chat(page, math_site)
    texts = [
        "It costs $5 and $6 today, or $5, $10.",
        "Escaped: \\$x\\$ stays text.",
        "In code: `$x$` and `\\(y\\)` and `$$z$$`.",
        "```\n$$a$$ and $b$ and \\[c\\]\n```",
        "    $indented$ code",
        "$5 and `$x$`",
        "Next to them, real math: $x^2$.",
        "$$a$$ shown, then a block:\n```\n$$\n```\n\n\\[b\n\n```\n\\]\n```",
    ]
    render(page, texts, "literal-area")
    bodies = per_answer(page, "literal-area", "(b) => b.textContent")
    assert "It costs $5 and $6 today, or $5, $10." in bodies[0]
    assert "Escaped: $x$ stays text." in bodies[1]
    codes = page.evaluate("() => [...document.querySelectorAll('#literal-area code')].map((c) => c.textContent)")
    assert codes == ["$x$", "\\(y\\)", "$$z$$", "$$a$$ and $b$ and \\[c\\]\n", "$indented$ code\n", "$x$",
                     "$$\n", "\\]\n"]  # a display block never reaches into the code after it
    annotations = page.evaluate("() => [...document.querySelectorAll('#literal-area .katex annotation')]"
                                ".map((a) => a.textContent)")
    assert annotations == ["x^2", "a"]  # the formulas among them
    w.assert_clean()


def test_a_malformed_formula_shows_as_text_and_the_rest_renders(page, math_site):
    w = open_chat(page, math_site)
    render(page, ["Before $x^$ mid $\\frac{1}{$ then **bold** and $y_1$.\n\n- a list $\\sqrt{$ item"],
           "broken-area")
    errors = page.evaluate("() => [...document.querySelectorAll('#broken-area .katex-error')]"
                           ".map((e) => [e.textContent, e.getAttribute('title')])")
    assert [text for text, _ in errors] == ["x^", "\\frac{1}{", "\\sqrt{"]
    assert all(title.startswith("ParseError: KaTeX parse error") for _, title in errors)
    assert page.locator("#broken-area strong", has_text="bold").count() == 1
    assert page.locator("#broken-area .body li").count() == 1
    assert page.evaluate("() => document.querySelector('#broken-area .katex annotation').textContent") == "y_1"
    assert page.evaluate(CHECK, "broken-area") == []
    w.assert_clean()


HOSTILE = [
    "$\\href{javascript:xss()}{click}$",
    "$\\url{javascript:xss()}$",
    "$\\htmlClass{notice}{fake notice}$",
    "$\\htmlStyle{position:fixed;inset:0;background:red}{overlay}$",
    "$\\htmlId{prompt}{x}$",
    "$\\htmlData{action=delete, id=x}{x}$",
    "$\\includegraphics{http://evil.invalid/x.png}$",
    "$\\text{<img src=x onerror=xss()>}$ and $x$",
    "$\\rule{10000em}{10000em}$",
    "$\\kern{-1000em}\\text{moved}$ and $\\hspace{-500em}x$ and $\\raisebox{-300em}{y}$",
    "$\\color{#fff}{hidden}$ and $\\colorbox{red}{x}$ and $\\fcolorbox{red}{blue}{y}$ and $\\pmb{z}$",
    # macro bombs: 10^6 expansions, and endless recursion
    "$\\def\\a{xxxxxxxxxx}\\def\\b{\\a\\a\\a\\a\\a\\a\\a\\a\\a\\a}\\def\\c{\\b\\b\\b\\b\\b\\b\\b\\b\\b\\b}"
    "\\def\\d{\\c\\c\\c\\c\\c\\c\\c\\c\\c\\c}\\def\\e{\\d\\d\\d\\d\\d\\d\\d\\d\\d\\d}\\e\\e\\e\\e\\e\\e\\e\\e\\e\\e$",
    "$\\def\\x#1{\\x{#1#1}}\\x{a}$",
    "$$\\begin{array}{c}\\htmlClass{visually-hidden}{y}\\end{array}$$",
    # the model's own markup dressed as KaTeX's, or as a formula's slot (whose nonce it cannot know);
    # with style attributes or handlers too in test_ui_xss.py, which serves the page without its
    # policy (under it, the sanitizer's parsing of those is itself reported, and blocked)
    '<span class="katex"><span class="strut">forged</span></span>',
    '<span class="math-00000000000000000000000000000000-0">slot</span> <div class="katex-display">d</div>',
]


def test_hostile_formulas_stay_inert(page, math_site):
    w = open_chat(page, math_site)
    page.evaluate(TRAP)
    render(page, HOSTILE, "hostile-area")
    # Image errors and the like have had their turn: a control image with a live handler fired first.
    page.evaluate("() => { window.__control = 0; const img = new Image(); img.onerror = () => window.__control++;"
                  " img.src = 'data:image/png;base64,broken'; document.body.append(img); }")
    page.wait_for_function("() => window.__control === 1")
    assert page.evaluate("window.__xss") == 0
    assert page.evaluate(CHECK, "hostile-area") == []
    facts = per_answer(page, "hostile-area", """(b) => ({
        katex: b.querySelectorAll('.katex').length, errors: b.querySelectorAll('.katex-error').length,
        links: b.querySelectorAll('a').length, text: b.textContent})""")
    assert sum(f["links"] for f in facts) == 0
    # trust: false: each command is refused and shown as its own name, never applied
    for i, name in enumerate(["\\href", "\\url", "\\htmlClass", "\\htmlStyle", "\\htmlId", "\\htmlData",
                              "\\includegraphics"]):
        assert name in facts[i]["text"], (name, facts[i])
    assert "<img src=x onerror=xss()>" in facts[7]["text"]  # KaTeX's \text is text
    # macro bombs end with KaTeX's error, as text, without hanging the page
    assert facts[11]["errors"] == 1 and "Too many expansions" in page.evaluate(
        "() => document.querySelectorAll('#hostile-area .body')[11].querySelector('.katex-error').title")
    # the endless one overflows KaTeX's stack (a RangeError, which throwOnError: false does not
    # catch): the formula is shown as its source, the rest of the page goes on
    assert facts[12]["katex"] == 0 and facts[12]["text"].strip() == HOSTILE[12]
    # sizes are capped: the 10000em rule is at most maxSize (10em) of its formula's font
    rule = page.evaluate("""() => { const r = document.querySelectorAll('#hostile-area .body')[8].querySelector('.rule');
        const em = parseFloat(getComputedStyle(r).fontSize);
        return [r.getBoundingClientRect().width / em, r.getBoundingClientRect().height / em]; }""")
    assert 0 < rule[0] <= 10.01 and 0 < rule[1] <= 10.01
    # nothing an answer lays out paints outside it: every answer's box contains what it shows
    assert page.evaluate("""() => [...document.querySelectorAll('#hostile-area .body')].every((b) =>
        getComputedStyle(b).overflowX !== 'visible' && getComputedStyle(b).overflowY !== 'visible')""")
    # the forged KaTeX and slot are plain text: no class, no style, not filled with a formula
    assert [f["katex"] for f in facts[14:]] == [0, 0]
    assert "forged" in facts[14]["text"] and "slot" in facts[15]["text"]
    w.assert_clean()  # \includegraphics fetched nothing


def test_style_attributes_from_markup_break_the_policy_but_cssom_does_not(page, math_site):
    """Why static/math.js never lets KaTeX's style attributes be parsed: under style-src 'self' a
    style attribute met by the HTML parser (DOMPurify's included) or set by setAttribute is refused
    (style-src-attr), while CSSOM (element.style) is not. KaTeX's renderToString output is markup
    full of style attributes."""
    open_chat(page, math_site)
    cases = {
        "parsed": "() => new DOMParser().parseFromString('<span style=\"height:1em\">x</span>', 'text/html').body.innerHTML",
        "setAttribute": "() => { const s = document.createElement('span'); s.setAttribute('style', 'height:1em');"
                        " document.body.append(s); return getComputedStyle(s).height; }",
        "cssom": "() => { const s = document.createElement('span'); s.style.display = 'inline-block';"
                 " s.style.height = '1em'; document.body.append(s); return getComputedStyle(s).height; }",
    }
    seen = {}
    for name, js in cases.items():
        CSP_VIOLATIONS.clear()
        result = page.evaluate(js)
        page.evaluate("0")  # the reports have reached Python
        seen[name] = (result, [v["directive"] for v in CSP_VIOLATIONS])
    assert seen["parsed"][1] == ["style-src-attr"]
    # Refused: the span does not get the 1em height that CSSOM gives the same span.
    assert seen["setAttribute"][1] == ["style-src-attr"] and seen["setAttribute"][0] != seen["cssom"][0]
    assert seen["cssom"][1] == [] and seen["cssom"][0] != "auto"
    CSP_VIOLATIONS.clear()  # this test wanted those violations


def test_katex_loads_only_for_an_answer_with_math(page, serve, tmp_path):
    site = ui_site(serve, tmp_path)  # its own server: its log holds this test's requests only
    w = open_chat(page, site)
    prompt = page.locator("#prompt")
    prompt.fill("Prices: $5 and $6; code `$x$`; *no* math here")
    prompt.press("Enter")
    answers(page).and_(page.locator("[data-rendered=markdown]")).wait_for()
    assert page.locator("#messages .msg-assistant code").inner_text() == "$x$"
    assert page.locator("#messages .katex").count() == 0
    assert katex_requests(site.log) == [] and katex_requests(w.requests) == []
    prompt.fill("Area: $\\pi r^2$")
    prompt.press("Enter")
    page.locator("#messages .msg-assistant").nth(1).locator(".katex annotation").wait_for(state="attached")
    assert page.locator("#messages .msg-assistant").nth(1).locator("annotation").text_content() == "\\pi r^2"
    loaded = katex_requests(site.log)
    assert {"/static/math.js", "/static/vendor/katex/katex.mjs", "/static/vendor/katex/katex.min.css"} <= set(loaded)
    w.assert_clean()


def test_code_blocks_get_a_copy_button_that_copies_the_code(page, math_site):
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=math_site.origin)
    w = open_chat(page, math_site)
    texts = ["```python\nprint('hi $x$')\n```\n\nand\n\n```\nplain <b>text</b>\n```\n\n"
             '<button class="copy-code" aria-label="Copy code">Copy</button> <button>Copy</button>']
    render(page, texts, "code-area")
    buttons = page.locator("#code-area").get_by_role("button", name="Copy code", exact=True)
    assert buttons.count() == 2  # one per block; the answer's own buttons were removed
    assert page.locator("#code-area .body button").count() == 2
    assert page.evaluate("""() => [...document.querySelectorAll('#code-area .body button')].every((b) =>
        b.type === 'button' && b.parentElement.matches('div.code-block') && b.nextElementSibling.tagName === 'PRE')""")
    # highlight.js still runs on the named language
    assert page.locator("#code-area pre code.hljs.language-python span").count() > 0
    buttons.nth(1).click()
    page.wait_for_function("() => document.querySelectorAll('#code-area .copy-code')[1].textContent === 'Copied'")
    assert page.evaluate("() => navigator.clipboard.readText()") == "plain <b>text</b>\n"
    assert page.locator("#code-area .copy-code").nth(1).get_attribute("aria-label") == "Copied"
    buttons.nth(0).click()
    page.wait_for_function("() => document.querySelectorAll('#code-area .copy-code')[0].textContent === 'Copied'")
    assert page.evaluate("() => navigator.clipboard.readText()") == "print('hi $x$')\n"
    # and it goes back to saying what it does
    page.wait_for_function("() => document.querySelectorAll('#code-area .copy-code')[1].textContent === 'Copy'")
    assert page.evaluate(CHECK, "code-area") == []
    w.assert_clean()


def test_a_render_waiting_for_katex_never_overwrites_what_the_view_shows_since(page, math_site):
    """The first answer with math waits for KaTeX to load; if the message streams again meanwhile (a
    retry), the late render must not replace the streaming text."""
    w = open_chat(page, math_site)
    py = PagePython(page)
    assert py("""
from app import ffi
node = ffi.element("div")
[await ffi.render_markdown(node, "$x$", current=lambda: False), ffi.get_prop(node, "childElementCount"),
 await ffi.render_markdown(node, "$x$"), ffi.get_prop(node, "childElementCount")]
""") == [False, 0, True, 1]
    py("""
from app import ffi
from app.ui.chat import Message
from app.ui.view import MessageView
area = ffi.element("ol", attrs={"id": "race-area"})
ffi.append(ffi.node("chat"), area)
first = Message("assistant", "Old answer $\\\\pi$", id="first")
ffi.append(area, MessageView(first, None, area).root)   # starts rendering: KaTeX is loading
first.status.set("streaming")                           # a retry streams before it has loaded
ffi.append(area, MessageView(Message("assistant", "Then $x$", id="later"), None, area).root)
""")
    # Both renders wait for the same module and stylesheet, so the first one is done by the time the
    # later one is shown.
    page.wait_for_function("() => document.querySelector('#race-area [data-id=later][data-rendered=markdown] .katex')")
    first = page.evaluate("""() => { const li = document.querySelector('#race-area [data-id=first]');
        const body = li.querySelector('.body');
        return [body.className, body.textContent, body.querySelectorAll('.katex').length, li.dataset.rendered || null]; }""")
    assert first == ["body plain", "Old answer $\\pi$", 0, None]
    w.assert_clean()
