"""The WebGPU report: what this page's adapter offers and what that means for running models.

``WebGPUReport.from_probe(raw)`` interprets the plain dict that :func:`app.ffi.page.probe_webgpu`
returns, so everything here is plain Python and unit-tested under CPython.

    >>> report = WebGPUReport.from_probe({"api": False, "adapter": False})
    >>> report.available, report.reason
    (False, 'no-api')
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from app.errors import WebGPUUnavailable

# The limits web-llm's kernels depend on, with the label users see.
KEY_LIMITS = {
    "maxBufferSize": "Largest buffer",
    "maxStorageBufferBindingSize": "Largest storage binding",
    "maxComputeWorkgroupStorageSize": "Workgroup storage",
    "maxStorageBuffersPerShaderStage": "Storage buffers per stage",
}
KEY_FEATURES = ("shader-f16", "subgroups")
_BYTE_LIMITS = {"maxBufferSize", "maxStorageBufferBindingSize", "maxComputeWorkgroupStorageSize"}

HELP = {
    "no-api": (
        "This browser has no WebGPU, so models cannot run on this device. Use a recent Chrome or "
        "Edge (version 113 or newer) on a desktop, or Chrome on Android 121+. In Firefox or Safari, "
        "enable WebGPU in the browser's experimental settings. Cloud backends still work."
    ),
    "no-adapter": (
        "WebGPU is present but the browser gave no GPU adapter: the GPU may be blocklisted, "
        "hardware acceleration may be off, or the browser runs headless. Turn on hardware "
        "acceleration (chrome://settings/system) and check chrome://gpu; in a test browser pass "
        "--enable-unsafe-webgpu. Cloud backends still work."
    ),
    "error": (
        "Asking the browser for a WebGPU adapter failed. Reload the page; if it persists, check "
        "chrome://gpu. Cloud backends still work."
    ),
}


def format_bytes(n: int) -> str:
    """``1073741824`` -> ``'1 GiB'``; binary units, at most one decimal."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            text = f"{value:.1f}".rstrip("0").rstrip(".")
            return f"{text} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class WebGPUReport:
    """What WebGPU offers this page. ``available`` is False with a ``reason`` when it offers nothing."""

    available: bool
    reason: str | None = None  # no-api | no-adapter | error
    error: str | None = None
    vendor: str = ""
    architecture: str = ""
    device: str = ""
    description: str = ""
    fallback: bool = False
    limits: dict[str, int] = field(default_factory=dict)
    features: frozenset[str] = frozenset()

    @classmethod
    def from_probe(cls, raw: dict[str, Any]) -> WebGPUReport:
        if not raw.get("api"):
            return cls(available=False, reason="no-api")
        if raw.get("error"):
            return cls(available=False, reason="error", error=str(raw["error"]))
        if not raw.get("adapter"):
            return cls(available=False, reason="no-adapter")
        info = raw.get("info") or {}
        return cls(
            available=True,
            vendor=info.get("vendor", ""),
            architecture=info.get("architecture", ""),
            device=info.get("device", ""),
            description=info.get("description", ""),
            fallback=bool(raw.get("fallback")),
            limits={k: int(v) for k, v in (raw.get("limits") or {}).items()},
            features=frozenset(raw.get("features") or ()),
        )

    @property
    def has_f16(self) -> bool:
        return "shader-f16" in self.features

    @property
    def adapter_name(self) -> str:
        parts = [p for p in (self.vendor, self.architecture) if p]
        name = " / ".join(parts) or self.description or "unknown adapter"
        return f"{name} (fallback adapter)" if self.fallback else name

    def summary(self) -> str:
        """One line for the page."""
        if not self.available:
            return {"no-api": "not supported by this browser",
                    "no-adapter": "no GPU adapter available",
                    "error": "adapter request failed"}[self.reason or "error"]
        feats = ", ".join(f"{f} {'yes' if f in self.features else 'no'}" for f in KEY_FEATURES)
        return f"{self.adapter_name}; {feats}"

    def help_text(self) -> str:
        """Why WebGPU is missing and what to do; empty when it is available."""
        if self.available:
            return ""
        text = HELP[self.reason or "error"]
        return f"{text} ({self.error})" if self.error else text

    def limit_rows(self) -> list[tuple[str, str]]:
        """(label, value) for the limits and features that decide what fits."""
        rows = []
        for key, label in KEY_LIMITS.items():
            if key in self.limits:
                value = self.limits[key]
                shown = format_bytes(value) if key in _BYTE_LIMITS else str(value)
                rows.append((f"{label} ({key})", shown))
        for feat in KEY_FEATURES:
            rows.append((f"Feature {feat}", "yes" if feat in self.features else "no"))
        return rows

    def require(self) -> None:
        """Raise :class:`WebGPUUnavailable` (with the help text) unless an adapter is present."""
        if not self.available:
            raise WebGPUUnavailable(self.help_text(), reason=self.reason or "error")

    def fits(self, *, buffer_bytes: int = 0, needs: frozenset[str] = frozenset()) -> bool:
        """Whether a model whose largest buffer is ``buffer_bytes`` and that needs ``needs`` runs here."""
        if not self.available or not needs <= self.features:
            return False
        return buffer_bytes <= min(self.limits.get("maxBufferSize", 0),
                                   self.limits.get("maxStorageBufferBindingSize", 0))
