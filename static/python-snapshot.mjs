// Build time, in Node (build.py runs it; it is not part of the site): start the vendored Pyodide once,
// take a memory snapshot of the started interpreter and write it gzip-compressed. The page
// (static/python-start.js) starts Python from it instead of initialising the interpreter again in
// every visit.
//
//   node static/python-snapshot.mjs <folder with pyodide.mjs> <output file> [module ...]
//
// The modules named (build.py gives the standard-library ones the app imports) are imported first, so
// the snapshot holds them ready.
// The snapshot is only valid for the exact pyodide.asm.wasm it was made with (Pyodide checks its build
// id when it restores one), which is why it is made from the files the site ships.

import {writeFileSync} from "node:fs";
import {gzipSync} from "node:zlib";
import {pathToFileURL} from "node:url";
import path from "node:path";

const [folder, output, ...modules] = process.argv.slice(2);
if (!folder || !output) {
  console.error("usage: node python-snapshot.mjs <pyodide folder> <output file> [module ...]");
  process.exit(2);
}
const indexURL = path.resolve(folder) + path.sep;
const {loadPyodide} = await import(pathToFileURL(path.join(indexURL, "pyodide.mjs")).href);

// The environment a page's Pyodide starts with (its defaults), not this build machine's: the
// snapshot holds os.environ as it is now.
const py = await loadPyodide({indexURL, _makeSnapshot: true, env: {}, stdout: () => {}, stderr: console.error});
// Emscripten names the program after the Node script; a page gives its default. Restoring adds
// the script folder ("") to sys.path again, so it is taken out here. The locale and LANG follow the
// visitor's language: static/python-start.js sets them after restoring.
py.runPython(`
import os, sys
os.environ["_"] = "./this.program"
sys.executable = "/home/pyodide/this.program"
sys.path.remove("")
del os, sys
`);
for (const name of modules) py.pyimport(name).destroy();
const snapshot = py.makeMemorySnapshot();
// Every first visit downloads it: the smallest gzip (about 6 MiB for 30 MiB of mostly empty memory).
const packed = gzipSync(snapshot, {level: 9});
writeFileSync(output, packed);
console.log(`python snapshot: ${(snapshot.length / 2 ** 20).toFixed(1)} MiB of memory, ` +
            `${(packed.length / 2 ** 20).toFixed(1)} MiB compressed`);
