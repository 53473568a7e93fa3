// The Python panel's editor and files, for app/ffi/editor.py: a plain <textarea> (the browser's own
// editing, undo, selection and accessibility) over a <pre><code> that shows the same text highlighted
// by the vendored highlight.js (which escapes what it reads). Loaded when the panel first opens.
import hljs from "../vendor/highlight/highlight.min.js";
import "../render.js";  // adds highlight.js's light/dark stylesheets (and follows the theme toggle)

const MAX_HIGHLIGHT = 50000;  // a longer script is shown plain: highlighting it on each key would lag

function paint(textarea, code) {
  const text = textarea.value;
  if (text.length > MAX_HIGHLIGHT) code.textContent = text + "\n";
  else code.innerHTML = hljs.highlight(text, { language: "python", ignoreIllegals: true }).value + "\n";
  code.parentElement.scrollTop = textarea.scrollTop;
  code.parentElement.scrollLeft = textarea.scrollLeft;
}

// Keeps `code` showing `textarea`'s text highlighted as Python; Tab indents (4 spaces) and Shift+Tab
// dedents the current line, Escape then Tab leaves the editor (keyboard users are never trapped).
// Escape is marked handled (defaultPrevented) so the sheet around the editor stays open for that Tab.
// Returns a function that removes the listeners.
export function attach(textarea, code) {
  let escaped = false;
  const onInput = () => paint(textarea, code);
  const onScroll = () => {
    code.parentElement.scrollTop = textarea.scrollTop;
    code.parentElement.scrollLeft = textarea.scrollLeft;
  };
  const onKey = (event) => {
    if (event.key === "Escape") { escaped = true; event.preventDefault(); return; }
    if (event.key !== "Tab" || escaped || event.ctrlKey || event.metaKey || event.altKey) { escaped = false; return; }
    event.preventDefault();
    const { selectionStart: start, selectionEnd: end, value } = textarea;
    if (event.shiftKey) {
      const lineStart = value.lastIndexOf("\n", start - 1) + 1;
      const strip = /^ {1,4}/.exec(value.slice(lineStart))?.[0].length || 0;
      textarea.setRangeText("", lineStart, lineStart + strip, "preserve");
      textarea.setSelectionRange(Math.max(lineStart, start - strip), Math.max(lineStart, end - strip));
    } else {
      textarea.setRangeText("    ", start, end, "end");
    }
    paint(textarea, code);
  };
  textarea.addEventListener("input", onInput);
  textarea.addEventListener("scroll", onScroll);
  textarea.addEventListener("keydown", onKey);
  paint(textarea, code);
  return () => {
    textarea.removeEventListener("input", onInput);
    textarea.removeEventListener("scroll", onScroll);
    textarea.removeEventListener("keydown", onKey);
  };
}

// Replace the editor's text (an example, a saved script, an import) and repaint.
export function setText(textarea, code, text) {
  textarea.value = text;
  paint(textarea, code);
}
