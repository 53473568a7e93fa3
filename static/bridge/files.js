// Files the user saves or opens, for app/ffi/files.py: a download of text the app made, and the text
// of a file picked in an <input type=file>. Used by the Python panel (scripts) and the conversations
// (export, import).

// Offer `text` as a file download named `name`.
export function saveText(name, text, type) {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const link = document.createElement("a");
  link.href = url;
  link.download = name;
  link.hidden = true;
  document.body.appendChild(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60000);
}

// The text of the file chosen in <input type=file> `input` (and the input cleared for the next pick),
// as JSON {name, text}; null when no file is chosen. Rejects (a plain Error) beyond `maxBytes`.
export async function readChosen(input, maxBytes) {
  const file = input.files && input.files[0];
  input.value = "";
  if (!file) return null;
  if (file.size > maxBytes) {
    const error = new Error(`${file.name} is ${file.size} bytes; at most ${maxBytes} can be opened`);
    error.name = "FileTooLarge";
    throw error;
  }
  return JSON.stringify({ name: file.name, text: await file.text() });
}

// ------------------------------------------------------------------ files added to the chat's Files
//
// The files picked in `input` are held here (the input is cleared for the next pick) until Python
// reads or drops them: their names and sizes come first, so a file too large is refused before a
// byte of it is read.
const held = new Map();
let nextHeld = 1;

// JSON [{id, name, size}] of the files picked in `input`.
export function takeChosen(input) {
  const out = [];
  for (const file of Array.from(input.files || [])) {
    const id = String(nextHeld++);
    held.set(id, file);
    out.push({ id, name: file.name, size: file.size });
  }
  input.value = "";
  return JSON.stringify(out);
}

// The bytes of a held file (a Uint8Array); it is let go of.
export async function readHeld(id) {
  const file = held.get(id);
  held.delete(id);
  if (!file) throw new Error(`no file ${id} is waiting to be read`);
  return new Uint8Array(await file.arrayBuffer());
}

export function dropHeld(id) { held.delete(id); }
