// Build time, in Node (build.py runs it; it is not part of the site): compile the app's modules to
// bytecode with the vendored Pyodide's own Python, so the page imports them without compiling their
// source in every visit. Each .pyc is written where that Python looks for it
// (app/.../__pycache__/<name>.cpython-314.pyc) under <output folder>; build.py puts them in app.zip
// beside the sources. They are "checked-hash" .pyc files: Python compares the hash of the source
// next to them before it uses one, so a .pyc that does not match its source is never run.
//
//   node static/python-compile.mjs <folder with pyodide.mjs> <folder holding app/> <output folder>

import {mkdirSync, readdirSync, readFileSync, writeFileSync} from "node:fs";
import {pathToFileURL} from "node:url";
import path from "node:path";

const [folder, root, output] = process.argv.slice(2);
if (!folder || !root || !output) {
  console.error("usage: node python-compile.mjs <pyodide folder> <folder holding app/> <output folder>");
  process.exit(2);
}
const indexURL = path.resolve(folder) + path.sep;
const {loadPyodide} = await import(pathToFileURL(path.join(indexURL, "pyodide.mjs")).href);
const py = await loadPyodide({indexURL, env: {}, stdout: () => {}, stderr: console.error});

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
  const target = path.join(output, ...path.posix.relative(HOME, cfile).split("/"));
  mkdirSync(path.dirname(target), {recursive: true});
  writeFileSync(target, py.FS.readFile(cfile));
}
checked.destroy();
compile.destroy();
console.log(`python bytecode: ${sources.length} modules of app/`);
