// Model output -> safe DOM, for app/ffi.py's render_markdown. Model output is untrusted input:
// markdown is rendered by marked (raw HTML passes through it), then everything is sanitized by
// DOMPurify before it reaches the page, then code blocks are highlighted by highlight.js (which
// escapes what it reads). Loaded on first use, so start-up does not pay for these libraries.
import { Marked } from "./vendor/marked/marked.esm.js";
import DOMPurify from "./vendor/dompurify/purify.es.mjs";
import hljs from "./vendor/highlight/highlight.min.js";

const marked = new Marked({ gfm: true, breaks: false, async: false });

// HTML only (no SVG or MathML), no styles (overlays, hidden text), no forms, nothing that loads
// remote media on its own: an answer must not be able to phone home or dress up as the app.
const PURIFY = {
  USE_PROFILES: { html: true },
  FORBID_TAGS: ["style", "form", "input", "button", "textarea", "select", "option", "iframe", "frame",
    "object", "embed", "video", "audio", "source", "track", "picture", "dialog", "template"],
  FORBID_ATTR: ["style", "srcset", "background", "poster", "action", "formaction", "ping", "id", "name"],
  ALLOW_DATA_ATTR: false,
  RETURN_DOM_FRAGMENT: true,
};

// Class names: the app's own stylesheet styles its interface by class (.notice, .msg-assistant,
// .visually-hidden...), so an answer could dress text up as part of the interface. Only a code
// block's "language-x" (from marked, naming what to highlight) is kept.
const LANGUAGE_CLASS = /^language-[\w+#-]{1,32}$/;

DOMPurify.addHook("afterSanitizeAttributes", (node) => {
  if (node.hasAttribute("class")) {
    const keep = node.tagName === "CODE" ? node.className.split(/\s+/).filter((c) => LANGUAGE_CLASS.test(c)) : [];
    if (keep.length) node.className = keep[0];
    else node.removeAttribute("class");
  }
  if (node.tagName === "A" && node.hasAttribute("href")) {
    node.setAttribute("target", "_blank");
    node.setAttribute("rel", "noopener noreferrer nofollow");
  }
  // Images only when inline (data:image/...); a remote image would tell its server what was said.
  if (node.tagName === "IMG") {
    const src = node.getAttribute("src") || "";
    if (!/^data:image\/(png|gif|jpeg|webp);/i.test(src)) node.removeAttribute("src");
  }
});

hljs.configure({ ignoreUnescapedHTML: true });
const HIGHLIGHT_MAX_CHARS = 20000;  // a longer block is shown plain: highlighting it would stall the page

// highlight.js ships one stylesheet per colour scheme. They are added here, on first use, rather
// than in index.html's <head>, so start-up does not wait for them; the theme toggle (app/ui/view.py
// ThemeToggle) switches their media queries, and these are its current choice.
export const HL_MEDIA = {
  auto: ["(prefers-color-scheme: light)", "(prefers-color-scheme: dark)"],
  light: ["all", "not all"],
  dark: ["not all", "all"],
};
{
  const [light, dark] = HL_MEDIA[document.documentElement.dataset.theme || "auto"] || HL_MEDIA.auto;
  for (const [id, file, media] of [["hl-light", "github.min.css", light], ["hl-dark", "github-dark.min.css", dark]]) {
    if (document.getElementById(id)) continue;
    const link = document.createElement("link");
    link.rel = "stylesheet";
    link.id = id;
    link.media = media;
    link.href = new URL(`./vendor/highlight/${file}`, import.meta.url).href;
    document.head.appendChild(link);
  }
}

export function toFragment(text) {
  const fragment = DOMPurify.sanitize(marked.parse(String(text)), PURIFY);
  for (const img of fragment.querySelectorAll("img:not([src])")) {
    img.replaceWith(document.createTextNode(img.getAttribute("alt") ? `[image: ${img.getAttribute("alt")}]` : "[image]"));
  }
  for (const code of fragment.querySelectorAll("pre > code")) {
    // Highlighted only when the answer names a language highlight.js knows, and not too long: with no
    // language it would try every grammar on the whole block (a large block froze the page), and an
    // unknown one only logs noise. Anything else stays plain text, which it already is.
    const lang = /\blanguage-([\w+#-]+)/.exec(code.className);
    if (!lang || !hljs.getLanguage(lang[1]) || code.textContent.length > HIGHLIGHT_MAX_CHARS) {
      code.removeAttribute("class");
      continue;
    }
    hljs.highlightElement(code);
  }
  return fragment;
}

export function renderInto(element, text) {
  element.replaceChildren(toFragment(text));
}
