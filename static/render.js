// Model output -> safe DOM, for app/ffi.py's render_markdown. Model output is untrusted input:
// markdown is rendered by marked (raw HTML passes through it), then everything is sanitized by
// DOMPurify before it reaches the page, then code blocks are highlighted by highlight.js (which
// escapes what it reads) and get a Copy button. Math ($…$, $$…$$, \(…\), \[…\]) is taken out of the
// markdown by marked's own lexer (so code spans and blocks keep it literal) and rendered by KaTeX
// (static/math.js, imported only when an answer has math). Loaded on first use, so start-up does not
// pay for these libraries.
import { Marked } from "./vendor/marked/marked.esm.js";
import DOMPurify from "./vendor/dompurify/purify.es.mjs";
import hljs from "./vendor/highlight/highlight.min.js";

const marked = new Marked({ gfm: true, breaks: false, async: false });

// Math, found by marked's lexer: its extensions run before its own rules at each position, but a code
// span or a fenced/indented block is consumed whole by those rules, so "$" inside code never reaches
// these. Inline $…$ follows the usual rule (pandoc's): a non-space right after the opening "$" and
// right before the closing one, and no digit right after it, so "costs $5 and $6" stays text; "\$"
// is marked's own escape (the start() below stops plain text before every backslash, so the escape
// rule sees it). Inline math holds no backtick, so "$5 and `$x$`" leaves the code span alone.
// A formula becomes an empty slot whose class carries this render's random nonce; the sanitizer
// keeps only that class, and the slot is filled with KaTeX's DOM afterwards (static/math.js).
const INLINE_MATH = [
  [/^\$\$((?:\\[^`]|[^\\$`]|\$(?!\$))+?)\$\$/, true],
  [/^\\\[((?:\\[^\]`]|[^\\`])+?)\\\]/, true],
  [/^\\\(((?:\\[^)`]|[^\\`])+?)\\\)/, false],
  [/^\$(?![\s$])((?:\\[^`]|[^\\$`])+?)\$(?!\d)/, false],
];
// A displayed block (delimiters at a block's start, the closing one ending its line) may span lines,
// but not a blank line or another "$$" / "\]": it never swallows the blocks after it (code included).
const BLOCK_MATH = [
  /^ {0,3}\$\$((?:[^$\n]|\n(?![ \t]*\n)|\$(?!\$))+?)\$\$[ \t]*(?:\n|$)/,
  /^ {0,3}\\\[((?:[^\\\n]|\n(?![ \t]*\n)|\\(?!\]))+?)\\\][ \t]*(?:\n|$)/,
];
let slots = null;  // while one answer is parsed: {nonce, formulas}

function slot(token, tag) {
  const index = slots.formulas.push({ tex: token.tex, display: token.display, raw: token.raw }) - 1;
  return `<${tag} class="math-${slots.nonce}-${index}"></${tag}>`;
}

marked.use({
  extensions: [
    {
      name: "mathBlock",
      level: "block",
      tokenizer(src) {
        for (const rule of BLOCK_MATH) {
          const m = rule.exec(src);
          if (m && m[1].trim()) return { type: "mathBlock", raw: m[0], tex: m[1].trim(), display: true };
        }
        return undefined;
      },
      renderer(token) {
        return slot(token, "div");
      },
    },
    {
      name: "mathInline",
      level: "inline",
      start(src) {
        const i = src.search(/[$\\]/);
        return i < 0 ? undefined : i;
      },
      tokenizer(src) {
        for (const [rule, display] of INLINE_MATH) {
          const m = rule.exec(src);
          if (!m || !m[1].trim()) continue;
          if (!display && src[0] === "$" && /\s$/.test(m[1])) return undefined;  // "$5 and $": not math
          return { type: "mathInline", raw: m[0], tex: m[1].trim(), display };
        }
        return undefined;
      },
      renderer(token) {
        return slot(token, "span");
      },
    },
  ],
});

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
// A math slot's class (its nonce is this render's, unknown to the model) is kept too, on its own.
const LANGUAGE_CLASS = /^language-[\w+#-]{1,32}$/;

DOMPurify.addHook("afterSanitizeAttributes", (node) => {
  if (node.hasAttribute("class")) {
    let keep = node.tagName === "CODE" ? node.className.split(/\s+/).filter((c) => LANGUAGE_CLASS.test(c)) : [];
    if (slots && (node.tagName === "SPAN" || node.tagName === "DIV")
        && new RegExp(`^math-${slots.nonce}-\\d+$`).test(node.className)) keep = [node.className];
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

function nonce() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

// `citations`: the numbers of the passages the answer was given (app/knowledge.py); each "[n]" of
// them in the answer's text (not in code) becomes the app's own button (data-action "cite", value n)
// that opens the passage under the answer. Added after sanitizing: model output never makes one.
export async function toFragment(text, citations = null) {
  let fragment, formulas;
  slots = { nonce: nonce(), formulas: [] };
  const mark = slots.nonce;
  try {
    fragment = DOMPurify.sanitize(marked.parse(String(text)), PURIFY);
    formulas = slots.formulas;
  } finally {
    slots = null;
  }
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
    } else {
      hljs.highlightElement(code);
    }
    addCopyButton(code.parentElement, code);
  }
  const found = [...fragment.querySelectorAll(`span[class^="math-${mark}-"], div[class^="math-${mark}-"]`)];
  if (found.length) await fillMath(found, mark, formulas);
  if (citations && citations.length) linkCitations(fragment, new Set(Array.from(citations, Number)));
  return fragment;
}

function linkCitations(fragment, numbers) {
  const walker = document.createTreeWalker(fragment, NodeFilter.SHOW_TEXT, {
    acceptNode: (node) => (node.parentElement && node.parentElement.closest("pre, code, a, .katex")
      ? NodeFilter.FILTER_REJECT : NodeFilter.FILTER_ACCEPT),
  });
  const texts = [];
  for (let node = walker.nextNode(); node; node = walker.nextNode()) if (/\[\d+\]/.test(node.data)) texts.push(node);
  for (const node of texts) {
    const parts = node.data.split(/(\[\d+\])/);
    if (!parts.some((part) => numbers.has(Number(part.slice(1, -1))) && /^\[\d+\]$/.test(part))) continue;
    const out = document.createDocumentFragment();
    for (const part of parts) {
      const n = /^\[(\d+)\]$/.exec(part);
      if (n && numbers.has(Number(n[1]))) {
        const button = document.createElement("button");
        button.type = "button";
        button.className = "cite";
        button.dataset.action = "cite";
        button.value = n[1];
        button.textContent = part;
        button.setAttribute("aria-label", `Source ${n[1]}`);
        out.append(button);
      } else if (part) {
        out.append(document.createTextNode(part));
      }
    }
    node.replaceWith(out);
  }
}

// Each slot gets its formula rendered by KaTeX; if KaTeX cannot be had (or throws), the formula's
// own source, as text.
async function fillMath(found, mark, formulas) {
  let math = null;
  try {
    math = await import("./math.js");
    await math.ready();
  } catch (err) {
    console.warn("math rendering unavailable:", err);
    math = null;
  }
  for (const el of found) {
    const formula = formulas[Number(el.className.slice(`math-${mark}-`.length))];
    if (!formula) {
      el.remove();
      continue;
    }
    let node = null;
    if (math) {
      try {
        node = math.renderFormula(formula.tex, formula.display);
      } catch (err) {
        console.warn("formula not rendered:", err);
      }
    }
    el.replaceWith(node || document.createTextNode(formula.raw));
  }
}

// The app's own button (never model output: the sanitizer removes every <button>), around the block.
const COPIED_MS = 1500;

function addCopyButton(pre, code) {
  const block = document.createElement("div");
  block.className = "code-block";
  const button = document.createElement("button");
  button.type = "button";
  button.className = "copy-code";
  button.textContent = "Copy";
  button.setAttribute("aria-label", "Copy code");
  button.title = "Copy code";
  let reset = 0;
  button.addEventListener("click", async () => {
    let said;
    try {
      await navigator.clipboard.writeText(code.textContent);
      said = "Copied";
    } catch (err) {
      said = "Not copied";
      console.warn("copy failed:", err);
    }
    button.textContent = said;
    button.setAttribute("aria-label", said);
    clearTimeout(reset);
    reset = setTimeout(() => {
      button.textContent = "Copy";
      button.setAttribute("aria-label", "Copy code");
    }, COPIED_MS);
  });
  pre.replaceWith(block);
  block.append(button, pre);
}

// Renders are asynchronous (KaTeX loads on first need): the newest render of an element wins.
const latest = new WeakMap();

export async function renderInto(element, text, citations = null) {
  const ticket = {};
  latest.set(element, ticket);
  const fragment = await toFragment(text, citations);
  if (latest.get(element) === ticket) element.replaceChildren(fragment);
}
