import pytest

from app.errors import AppError, WebGPUUnavailable
from app.runtime import WebGPUReport, format_bytes

SWIFTSHADER = {
    "api": True, "adapter": True, "error": None, "fallback": True,
    "info": {"vendor": "google", "architecture": "swiftshader", "device": "", "description": ""},
    "limits": {"maxBufferSize": 1 << 30, "maxStorageBufferBindingSize": 1 << 30,
               "maxComputeWorkgroupStorageSize": 32768, "maxStorageBuffersPerShaderStage": 10,
               "maxTextureDimension1D": 8192},
    "features": ["subgroups", "timestamp-query"],
}


def test_adapter_report_names_adapter_and_key_features():
    r = WebGPUReport.from_probe(SWIFTSHADER)
    assert r.available and r.fallback and not r.has_f16
    assert r.summary() == "google / swiftshader (fallback adapter); shader-f16 no, subgroups yes"
    rows = dict(r.limit_rows())
    assert rows["Largest buffer (maxBufferSize)"] == "1 GiB"
    assert rows["Workgroup storage (maxComputeWorkgroupStorageSize)"] == "32 KiB"
    assert rows["Storage buffers per stage (maxStorageBuffersPerShaderStage)"] == "10"
    assert rows["Feature shader-f16"] == "no"
    assert not any("maxTextureDimension1D" in k for k in rows)  # only limits that matter
    assert r.help_text() == ""
    r.require()  # does not raise


@pytest.mark.parametrize("raw, reason, words", [
    ({"api": False, "adapter": False}, "no-api", "Chrome or Edge"),
    ({"api": True, "adapter": False}, "no-adapter", "--enable-unsafe-webgpu"),
    ({"api": True, "adapter": False, "error": "boom"}, "error", "(boom)"),
])
def test_missing_webgpu_says_why_and_what_to_do(raw, reason, words):
    r = WebGPUReport.from_probe(raw)
    assert not r.available and r.reason == reason
    assert words in r.help_text()
    assert r.limit_rows()[-2:] == [("Feature shader-f16", "no"), ("Feature subgroups", "no")]
    with pytest.raises(WebGPUUnavailable) as info:
        r.require()
    assert info.value.reason == reason and isinstance(info.value, AppError)
    assert not r.fits()


def test_fits_checks_buffers_and_features():
    r = WebGPUReport.from_probe(SWIFTSHADER)
    assert r.fits(buffer_bytes=512 << 20)
    assert not r.fits(buffer_bytes=(1 << 30) + 1)
    assert not r.fits(needs=frozenset({"shader-f16"}))
    assert r.fits(needs=frozenset({"subgroups"}))


@pytest.mark.parametrize("n, text", [(0, "0 B"), (1023, "1023 B"), (1536, "1.5 KiB"),
                                     (1 << 30, "1 GiB"), (5 << 40, "5 TiB")])
def test_format_bytes(n, text):
    assert format_bytes(n) == text
