import pytest

from app import ffi
from app.errors import BrowserOnly
from tests.unit.conftest import run


def test_module_imports_under_cpython_and_reports_versions():
    assert ffi.IN_BROWSER is False
    assert ffi.versions()["python"].count(".") == 2


@pytest.mark.parametrize("call", [
    lambda: ffi.to_js({"a": 1}),
    lambda: ffi.set_text("status", "x"),
    lambda: ffi.is_online(),
    lambda: run(ffi.probe_webgpu()),
])
def test_browser_only_calls_explain_themselves(call):
    with pytest.raises(BrowserOnly, match="needs the browser"):
        call()

