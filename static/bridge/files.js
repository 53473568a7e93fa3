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
