// TeX in model output -> safe DOM, for static/render.js, which imports this module only when an
// answer has math (so start-up and math-free answers never load KaTeX or its fonts).
//
// The formula is untrusted input, so:
// - KaTeX runs with trust: false (no \href, \url, \includegraphics, \htmlClass, \htmlStyle, \htmlId,
//   \htmlData: each renders as an error), bounded sizes (maxSize) and macro expansion (maxExpand),
//   and throwOnError: false (a malformed formula shows as KaTeX's error text, never breaks the rest).
// - KaTeX builds the formula as DOM (its tree's toNode: createElement, styles through CSSOM), never
//   as an HTML string: the page's policy (style-src 'self', no 'unsafe-inline') blocks a style
//   attribute that an HTML parser meets (DOMPurify's included) or that setAttribute sets, but not
//   element.style set by script. The few style *attributes* in KaTeX's tree (an SVG's width, which
//   its span's own width repeats; MathML's \pmb shadow and \fcolorbox border, inside the visually
//   hidden MathML) are dropped before toNode, so rendering never trips the policy.
// - Each formula's DOM is sanitized on its own, in place, by its own DOMPurify instance: MathML and
//   KaTeX's SVG allowed, no links, images or ids; class tokens only those katex.min.css styles or
//   starting with "katex" (none is a class of the app's stylesheet: tests/browser/test_ui_math.py);
//   style attributes are taken off before sanitizing and put back after,
//   through CSSOM, only for KaTeX's layout properties with plain numeric lengths.
// The subtree is KaTeX's by construction: static/render.js puts it in a slot marked with a random
// nonce the model cannot know, so markup written by the model never receives classes or styles.
import katex from "./vendor/katex/katex.mjs";
import createDOMPurify from "./vendor/dompurify/purify.es.mjs";

export const OPTIONS = Object.freeze({
  throwOnError: false,
  trust: false,
  strict: "ignore",
  output: "htmlAndMathml",  // MathML for screen readers (and the TeX source, as its annotation)
  maxSize: 10,               // ems: \rule{1000em}{1000em} and friends are capped
  maxExpand: 500,            // macro bombs (\def\a{\b\b}...) stop with "Too many expansions"
});

// KaTeX's layout properties and the values it writes for them: a number with a length unit (or a
// percentage of its own box). No colours, positions, transforms or URLs. The size is bounded too,
// so a negative \kern cannot throw text far outside the answer (the answer also clips, app.css).
const STYLE_PROPS = new Set(["height", "width", "min-width", "vertical-align", "top", "bottom", "left",
  "margin-left", "margin-right", "margin-top", "padding-left", "border-bottom-width",
  "border-right-width", "border-top-width"]);
const LENGTH = /^-?(\d+(\.\d+)?|\.\d+)(em|ex|px|%)$/;
const MAX_LENGTH = 100;  // em (KaTeX's tallest constructs stay far below)

const purify = createDOMPurify(window);
const PURIFY = {
  USE_PROFILES: { html: true, mathMl: true, svg: true },
  ADD_TAGS: ["semantics", "annotation"],  // MathML's holder of the TeX source (text only)
  FORBID_TAGS: ["a", "img", "image", "use", "style", "foreignObject", "annotation-xml", "form", "input",
    "button", "iframe", "object", "embed"],
  FORBID_ATTR: ["style", "href", "xlink:href", "src", "srcset", "id", "name", "action", "formaction"],
  ALLOW_DATA_ATTR: false,
  IN_PLACE: true,
};

let katexClasses = null;  // class names katex.min.css styles (read from the loaded sheet)

function classesOf(sheet) {
  const names = new Set();
  const walk = (rules) => {
    for (const rule of rules) {
      if (rule.selectorText) for (const m of rule.selectorText.matchAll(/\.([A-Za-z][\w-]*)/g)) names.add(m[1]);
      if (rule.cssRules) walk(rule.cssRules);
    }
  };
  walk(sheet.cssRules);
  return names;
}

purify.addHook("afterSanitizeAttributes", (node) => {
  if (!node.hasAttribute || !node.hasAttribute("class")) return;
  const keep = node.getAttribute("class").split(/\s+/)
    .filter((c) => /^katex(-[a-z]+)*$/.test(c) || (katexClasses && katexClasses.has(c)));
  if (keep.length) node.setAttribute("class", keep.join(" "));
  else node.removeAttribute("class");
});

// katex.min.css (its fonts are relative to it), added once; resolves when it applies.
const stylesheet = new Promise((resolve, reject) => {
  const existing = document.getElementById("katex-css");
  const link = existing || document.createElement("link");
  const done = () => {
    try {
      katexClasses = classesOf(link.sheet);
      resolve();
    } catch (err) {
      reject(err);
    }
  };
  if (existing && existing.sheet) return done();
  link.addEventListener("load", done, { once: true });
  link.addEventListener("error", () => reject(new Error("katex.min.css did not load")), { once: true });
  if (!existing) {
    link.rel = "stylesheet";
    link.id = "katex-css";
    link.href = new URL("./vendor/katex/katex.min.css", import.meta.url).href;
    document.head.appendChild(link);
  }
});

export function ready() {
  return stylesheet;
}

// KaTeX's tree (katex.__renderToDomTree: what katex.render turns into DOM) sets node.attributes with
// setAttribute; its style *objects* go through CSSOM and are kept (then filtered below).
function dropStyleAttributes(node) {
  if (node.attributes && Object.hasOwn(node.attributes, "style")) delete node.attributes.style;
  for (const child of node.children || []) dropStyleAttributes(child);
}

// One formula as sanitized DOM: a span (".katex", or ".katex-display" around it for display math).
export function renderFormula(tex, displayMode) {
  const tree = katex.__renderToDomTree(String(tex), { ...OPTIONS, displayMode: !!displayMode });
  dropStyleAttributes(tree);
  const holder = document.createElement("span");
  holder.append(tree.toNode());
  const styles = [];
  for (const el of holder.querySelectorAll("[style]")) {
    const keep = [];
    for (let i = 0; i < el.style.length; i++) {
      const prop = el.style.item(i);
      const value = el.style.getPropertyValue(prop).trim();
      if (STYLE_PROPS.has(prop) && LENGTH.test(value) && Math.abs(parseFloat(value)) <= MAX_LENGTH) keep.push([prop, value]);
    }
    el.removeAttribute("style");
    if (keep.length) styles.push([el, keep]);
  }
  purify.sanitize(holder, PURIFY);
  for (const [el, keep] of styles) {
    if (!holder.contains(el)) continue;  // removed by the sanitizer
    for (const [prop, value] of keep) el.style.setProperty(prop, value);
  }
  const out = document.createDocumentFragment();
  out.append(...holder.childNodes);
  return out;
}
