"""The text of a PDF's pages (``static/pdf.js``: the vendored pdf.js, imported on first use).

    pages = await pdf_text(data)        # ["text of page 1", ...]; "" for a page without a text layer
"""

from __future__ import annotations

import json

from app.ffi import _core

__all__ = ["pdf_text"]

PDF_MODULE_URL = "static/pdf.js"


async def pdf_text(data: bytes) -> list[str]:
    """Each page's text layer. :class:`~app.errors.UnsupportedFile` when pdf.js cannot read the file."""
    from app.errors import UnsupportedFile

    if not _core.IN_BROWSER:
        raise _core.browser_only("reading PDF files")
    module = await _core.import_module(PDF_MODULE_URL)
    try:
        raw = await module.pdfText(_core.to_js(data))
    except _core.JsException as exc:
        message = str(getattr(getattr(exc, "js_error", None), "message", "") or exc)
        raise UnsupportedFile(f"this PDF cannot be read ({message})") from None
    return [str(page) for page in json.loads(raw)]
