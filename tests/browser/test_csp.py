"""The page's Content-Security-Policy holds, and the suite notices when anything breaks it.

conftest.py records every ``securitypolicyviolation`` of every page and fails the test that caused
it; the policy is never bypassed. These tests show that the app boots and runs Python's bridges under
the policy with no violation, and that the recording really catches a violation.
"""

import pytest

from tests.browser.conftest import CSP_VIOLATIONS, PagePython, assert_no_csp_violations, open_app


def policy(page) -> dict[str, list[str]]:
    text = page.get_attribute('meta[http-equiv="Content-Security-Policy"]', "content")
    return {d.split()[0]: d.split()[1:] for d in text.split(";") if d.strip()}


def test_the_app_boots_under_its_policy_with_no_violation(page, site):
    watch = open_app(page, site)
    directives = policy(page)
    assert directives["script-src"] == ["'self'", "'wasm-unsafe-eval'"]
    assert "'unsafe-eval'" not in str(directives) and "'unsafe-inline'" not in str(directives)
    assert directives["object-src"] == ["'none'"] and directives["base-uri"] == ["'none'"]
    # Python reaches JS modules without eval: the bridge's importModule, and a lazily imported module.
    py = PagePython(page)
    assert py("""
from app.ffi import _core
reader = await _core.import_module("static/bridge/reader.js")
callable(reader.reader) and _core.bridge_module("page").query() == "{}"
""") is True
    assert page.evaluate("window.__cspViolations") == []
    watch.assert_clean()


@pytest.mark.parametrize("attack", [
    "setTimeout('document.title = \"evaluated\"', 0)",  # a string as code: eval
    "(() => { const s = document.createElement('script'); s.textContent = 'document.title = \"inline\"';"
    " document.body.append(s); })()",  # an inline script
    "(() => { const d = document.createElement('div');"
    " d.innerHTML = '<img src=x onerror=\"document.title = 1\">'; document.body.append(d); })()",  # a handler
])
def test_a_violation_is_recorded_and_fails_the_test(page, site, attack):
    open_app(page, site)
    page.evaluate(attack)  # Playwright's evaluate is exempt; what it asks the page to do is not
    page.wait_for_function("() => window.__cspViolations.length > 0")
    page.evaluate("0")  # the report has reached Python
    assert [v["directive"] for v in CSP_VIOLATIONS] in (["script-src"], ["script-src-elem"], ["script-src-attr"])
    assert page.title() == "WebGPU Python chat"  # and the code did not run
    with pytest.raises(AssertionError, match="violated its Content-Security-Policy"):
        assert_no_csp_violations()  # what conftest's pytest_runtest_call runs after every test
    CSP_VIOLATIONS.clear()  # this test wanted the violation
