// PyScript on the main thread without eval. When PyScript 0.7 starts a <script type="py">, it also
// prepares the hooks a PyScript *worker* would get, and compiles each non-empty set of them from a
// source string (the Function constructor), which the page's Content-Security-Policy (no 'unsafe-eval')
// refuses, so Python would never start. Its only built-in worker hook registers `_pyscript`'s file
// system inside PyScript workers; this page starts none (web-llm's worker is its own). Emptying the
// worker hook sets, through PyScript's public `hooks` export, leaves nothing to build. This runs as
// part of boot.js's module graph, right after core.js itself, before PyScript's first await.
import { hooks } from "../vendor/pyscript/core.js";

for (const name of ["onReady", "onBeforeRun", "onBeforeRunAsync", "onAfterRun", "onAfterRunAsync"]) {
  hooks.worker[name].clear();
}
