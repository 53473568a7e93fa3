// The text layer of a PDF, page by page, for app/ffi/pdf.py (the Files sheet, app/knowledge.py).
// pdf.js (vendored, pinned in package.json) parses it in its own module worker; nothing is rendered,
// no font is loaded and nothing is evaluated (isEvalSupported: false, under the page's CSP).
import * as pdfjs from "./vendor/pdfjs/pdf.min.mjs";

pdfjs.GlobalWorkerOptions.workerSrc = new URL("./vendor/pdfjs/pdf.worker.min.mjs", import.meta.url).href;

// JSON ["text of page 1", ...]; a PDF that cannot be read rejects with a plain Error named
// "PdfUnreadable" (its message says why: not a PDF, damaged, password-protected).
export async function pdfText(bytes) {
  let doc;
  try {
    doc = await pdfjs.getDocument({ data: bytes, isEvalSupported: false, disableFontFace: true,
      useSystemFonts: false, stopAtErrors: false }).promise;
  } catch (e) {
    const error = new Error(`${e && e.name ? e.name + ": " : ""}${e && e.message ? e.message : e}`);
    error.name = "PdfUnreadable";
    throw error;
  }
  try {
    const pages = [];
    for (let i = 1; i <= doc.numPages; i++) {
      const page = await doc.getPage(i);
      const content = await page.getTextContent();
      pages.push(content.items.map((item) => (item.str ?? "") + (item.hasEOL ? "\n" : "")).join(""));
      page.cleanup();
    }
    return JSON.stringify(pages);
  } finally {
    await doc.destroy();
  }
}
