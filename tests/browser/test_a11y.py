"""Screenshots and an accessibility check (axe-core) of the page at three widths, light and dark.

One page is driven through each width x theme (resized, and the theme toggled in the header) and in
each through four states: empty (a new conversation, with its starter prompts), an answer
streaming, the Models sheet open, and the header's model switcher open. Each state is saved as
``test-output/screenshots/a11y-<width>-<theme>-<state>.png`` and checked with axe-core: no violation
of impact "serious" or "critical" may remain; lesser ones are printed.

axe-core (a devDependency, never part of dist/) is served by the test server beside the app and
added as a script file: the page's Content-Security-Policy forbids inline scripts and eval, and
axe needs neither (conftest fails the test on any violation of the policy).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.browser.ui_helpers import close_sheet, open_chat, open_sheet, shot, ui_site

AXE = Path(__file__).resolve().parents[2] / "node_modules" / "axe-core" / "axe.min.js"
AXE_URL = "static/axe.min.js"  # where the test server serves it (overlay), relative to the site
BLOCKING = ("serious", "critical")
STREAM = "#messages .msg-assistant[data-status=streaming]"


@pytest.fixture(scope="module")
def a11y_site(serve, tmp_path_factory):
    if not AXE.exists():
        pytest.fail(f"{AXE} is missing: axe-core is a devDependency (`npm ci` installs it)")
    return ui_site(serve, tmp_path_factory.mktemp("a11y"), overlay={AXE_URL: AXE})


def axe(page, include: str | None = None) -> dict:
    """axe-core's results for the page as it is now (WCAG 2.x A/AA and best practices); ``include``:
    only the elements this selector matches."""
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.add_script_tag(url=AXE_URL)
        page.wait_for_function("() => typeof window.axe === 'object' && typeof window.axe.run === 'function'")
    results = page.evaluate("""(include) => axe.run(include ? {include: [include]} : document, {
        resultTypes: ['violations', 'incomplete'],
        runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa', 'best-practice']},
    }).then(r => ({
        passes: r.passes.length, engine: r.testEngine.version,
        incomplete: r.incomplete.map(v => ({id: v.id, impact: v.impact,
            nodes: v.nodes.map(n => ({target: n.target.join(' '), summary: n.failureSummary}))})),
        violations: r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
            nodes: v.nodes.map(n => ({target: n.target.join(' '), summary: n.failureSummary}))})),
    }))""", include)
    # axe really ran and checked something: its version, and rules that passed.
    assert results["engine"].startswith("4."), results
    assert results["passes"] > 0, results
    return results


def check(page, name: str) -> list[dict]:
    """Screenshot and axe: the serious and critical violations (the others are printed)."""
    shot(page, name)
    results = axe(page)
    blocking = []
    for v in results["violations"]:
        if v["impact"] in BLOCKING:
            blocking.append({"state": name, **v})
        else:
            print(f"{name}: {v['impact']} {v['id']} ({v['help']}): {[n['target'] for n in v['nodes']]}")
    for v in results["incomplete"]:  # what axe could not decide (e.g. text under a scrolled list's edge)
        print(f"{name}: needs review: {v['id']} on {len(v['nodes'])} elements")
    return blocking


WIDTHS = (360, 768, 1440)


def new_chat(page) -> None:
    """Start an empty conversation, through the conversation list (a sheet on a phone)."""
    if page.locator("#messages .msg").count() == 0:
        return
    if page.is_visible("#open-conversations"):
        open_sheet(page, "conversations")
    page.locator("#new-chat").click()
    page.wait_for_selector("#empty-state", state="visible")


def test_screens_have_no_serious_accessibility_violations(page, a11y_site):
    """One page, driven through every width and both themes (resized and toggled in place: a boot
    per screen would cost a minute each)."""
    page.set_viewport_size({"width": WIDTHS[0], "height": 900})
    page.emulate_media(color_scheme="dark")
    w = open_chat(page, a11y_site)
    found: list[dict] = []
    for theme in ("light", "dark"):
        # The system prefers the other theme and the header's toggle picks this one: the override is
        # what is checked (auto -> light -> dark).
        page.emulate_media(color_scheme="dark" if theme == "light" else "light")
        page.locator("#theme").click()
        page.wait_for_selector(f"html[data-theme={theme}]")
        dark = page.evaluate("() => matchMedia('(prefers-color-scheme: dark)').matches")
        assert dark == (theme == "light")  # the system's preference is indeed the other one
        assert page.evaluate("() => getComputedStyle(document.documentElement).colorScheme") == theme
        for width in WIDTHS:
            page.set_viewport_size({"width": width, "height": 900})
            new_chat(page)
            assert page.locator("#messages .msg").count() == 0 and page.locator("#starters button").count() > 0
            found += check(page, f"a11y-{width}-{theme}-empty")

            page.fill("#prompt", "hello [[tokens=400]] [[delay=30]]")
            page.locator("#send").click()
            page.wait_for_function("([sel]) => (document.querySelector(sel + ' .body')?.textContent || '')"
                                   ".split(' ').length > 5", arg=[STREAM])
            found += check(page, f"a11y-{width}-{theme}-streaming")
            assert page.locator(STREAM).count() == 1, "the answer ended before the check: make it longer"
            page.keyboard.press("Escape")
            page.locator("#messages .msg-assistant[data-status=stopped]").wait_for()

            open_sheet(page, "models")
            page.wait_for_selector("#models[data-state=ready]")
            page.locator("#model-list li").first.wait_for()
            found += check(page, f"a11y-{width}-{theme}-models")
            close_sheet(page, "models")

            page.locator("#model-switch-button").click()
            page.locator("#model-switch-list button").first.wait_for()
            found += check(page, f"a11y-{width}-{theme}-switcher")
            page.keyboard.press("Escape")
            page.wait_for_selector("#model-switch-menu", state="hidden")

    # The check can fail: a button without a name, added to this page, is reported as critical.
    page.evaluate("""() => { const b = document.createElement('button'); b.id = 'a11y-probe';
                             document.getElementById('composer').append(b); }""")
    probe = axe(page, "#a11y-probe")["violations"]
    page.evaluate("() => document.getElementById('a11y-probe').remove()")
    assert [(v["id"], v["impact"]) for v in probe] == [("button-name", "critical")], probe
    assert found == [], "axe found serious or critical violations:\n" + json.dumps(found, indent=1)
    w.assert_clean()
