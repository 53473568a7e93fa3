"""Errors users can branch on.

    AppError                      base of everything this package raises on purpose
    +-- UsageError                the call itself is wrong; nothing was sent or changed
    +-- BrowserOnly               a browser-only feature was used under CPython
    +-- WebGPUUnavailable         this page has no WebGPU adapter (missing API, flag, or blocklist)

Catch by class, never by message text: ``except WebGPUUnavailable: offer_cloud()``.
"""

from __future__ import annotations


class AppError(Exception):
    """Base class of every error this package raises on purpose."""


class UsageError(AppError, ValueError):
    """The request or argument is invalid; it was rejected before anything ran."""


class BrowserOnly(AppError, RuntimeError):
    """A feature that needs the browser (Pyodide, the DOM, WebGPU) was used under CPython."""


class WebGPUUnavailable(AppError, RuntimeError):
    """No WebGPU adapter on this page; ``reason`` is one of ``no-api``, ``no-adapter``, ``error``."""

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason
