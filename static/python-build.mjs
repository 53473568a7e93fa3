// Build time, in Node (build.py runs it; it is not part of the site): start the vendored Pyodide once
// and make from it the two things that spare the page Python work in every visit.
//
//   node static/python-build.mjs <folder with pyodide.mjs> <folder holding app/> <snapshot file>
//                                <bytecode folder> [module ...]
//
// 1. A memory snapshot of the started interpreter, gzip-compressed: the page (static/python-start.js)
//    restores it instead of initialising the interpreter. The modules named (build.py gives the
//    standard-library ones the app imports) are imported first, so the snapshot holds them ready.
//    A snapshot is only valid for the exact pyodide.asm.wasm it was made with (Pyodide checks its
//    build id when it restores one), which is why it is made from the files the site ships.
// 2. The app's modules compiled to bytecode by that same Python, each .pyc where it looks for one
//    (app/.../__pycache__/<name>.cpython-314.pyc) under <bytecode folder>; build.py puts them in
//    app.zip beside the sources. They are "checked-hash" .pyc files: Python compares the hash of the
//    source next to them before it uses one, so a .pyc that does not match its source is never run.
//    Compiled after the snapshot is taken, so none of this work is in it.

import {mkdirSync, readdirSync, readFileSync, writeFileSync} from "node:fs";
import {gzipSync} from "node:zlib";
import {pathToFileURL} from "node:url";
import path from "node:path";

const [folder, root, snapshotFile, bytecode, ...modules] = process.argv.slice(2);
if (!folder || !root || !snapshotFile || !bytecode) {
  console.error("usage: node python-build.mjs <pyodide folder> <folder holding app/> <snapshot file> " +
                "<bytecode folder> [module ...]");
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
writeFileSync(snapshotFile, packed);
console.log(`python snapshot: ${(snapshot.length / 2 ** 20).toFixed(1)} MiB of memory, ` +
            `${(packed.length / 2 ** 20).toFixed(1)} MiB compressed`);

// Where the page's PyScript unpacks app.zip: its working directory.
const HOME = "/home/pyodide";
const sources = readdirSync(path.join(root, "app"), {recursive: true})
  .filter((name) => name.endsWith(".py") && !name.split(path.sep).includes("__pycache__"))
  .map((name) => path.posix.join("app", ...name.split(path.sep)));
const compile = py.pyimport("py_compile");
const checked = compile.PycInvalidationMode.CHECKED_HASH;
for (const rel of sources) {
  const file = path.posix.join(HOME, rel);
  py.FS.mkdirTree(path.posix.dirname(file));
  py.FS.writeFile(file, readFileSync(path.join(root, ...rel.split("/"))));
  const cfile = compile.compile.callKwargs(file, {doraise: true, invalidation_mode: checked});
  const target = path.join(bytecode, ...path.posix.relative(HOME, cfile).split("/"));
  mkdirSync(path.dirname(target), {recursive: true});
  writeFileSync(target, py.FS.readFile(cfile));
}
checked.destroy();
compile.destroy();
console.log(`python bytecode: ${sources.length} modules of app/`);
