// Images the user attaches to a message, for app/ffi/images.py: picked in an <input type=file>, pasted
// or dropped onto the composer. Each file is checked (type, size) before it is decoded, then drawn at
// most `maxSide` pixels on its longer side (what a vision model takes: Phi-3.5-vision 1344 px) and
// encoded as a data URL: PNG for PNG and GIF (the first frame; transparency kept), JPEG otherwise.
// Results cross to Python as JSON: {name, type, width, height, url} or {name, error}.

const TYPES = ["image/png", "image/jpeg", "image/webp", "image/gif"];

function megabytes(n) {
  return `${(n / 1048576).toFixed(1)} MB`;
}

async function draw(source, name, maxSide) {
  let bitmap;
  try {
    bitmap = await createImageBitmap(source);
  } catch {
    return null;
  }
  const scale = Math.min(1, maxSide / Math.max(bitmap.width, bitmap.height));
  const width = Math.max(1, Math.round(bitmap.width * scale));
  const height = Math.max(1, Math.round(bitmap.height * scale));
  const canvas = document.createElement("canvas");
  canvas.width = width;
  canvas.height = height;
  canvas.getContext("2d").drawImage(bitmap, 0, 0, width, height);
  bitmap.close();
  return { width, height, canvas };
}

// One file -> the image as attached, or why it cannot be.
async function prepare(file, maxSide, maxBytes) {
  const name = file.name || "pasted image";
  if (!TYPES.includes(file.type)) {
    return { name, error: `${name} is ${file.type || "not an image"}; PNG, JPEG, WebP and GIF images can be attached` };
  }
  if (file.size > maxBytes) {
    return { name, error: `${name} is ${megabytes(file.size)}; at most ${megabytes(maxBytes)} can be attached` };
  }
  const drawn = await draw(file, name, maxSide);
  if (!drawn) return { name, error: `${name} could not be read as an image (damaged, or not what its name says)` };
  const type = file.type === "image/png" || file.type === "image/gif" ? "image/png" : "image/jpeg";
  return { name, type, width: drawn.width, height: drawn.height, url: drawn.canvas.toDataURL(type, 0.9) };
}

async function prepareAll(files, maxSide, maxBytes) {
  return JSON.stringify(await Promise.all(Array.from(files, (f) => prepare(f, maxSide, maxBytes))));
}

// The files chosen in <input type=file> `input` (the input cleared for the next pick).
export async function readChosenImages(input, maxSide, maxBytes) {
  const files = Array.from(input.files || []);
  input.value = "";
  return prepareAll(files, maxSide, maxBytes);
}

// Pasting or dropping files onto `target` calls onImages(json) with what they became; text pastes and
// drops stay the browser's. Returns the remover.
export function watchImages(target, maxSide, maxBytes, onImages) {
  const filesOf = (data) => Array.from((data && data.files) || []);
  const carriesFiles = (data) => !!data && Array.from(data.types || []).includes("Files");
  const onPaste = (event) => {
    const files = filesOf(event.clipboardData);
    if (!files.length) return;
    event.preventDefault();
    prepareAll(files, maxSide, maxBytes).then(onImages);
  };
  const onDragOver = (event) => {
    if (!carriesFiles(event.dataTransfer)) return;
    event.preventDefault();
    event.dataTransfer.dropEffect = "copy";
    target.dataset.drop = "over";
  };
  const onDragLeave = () => { delete target.dataset.drop; };
  const onDrop = (event) => {
    delete target.dataset.drop;
    const files = filesOf(event.dataTransfer);
    if (!files.length) return;
    event.preventDefault();
    prepareAll(files, maxSide, maxBytes).then(onImages);
  };
  target.addEventListener("paste", onPaste);
  target.addEventListener("dragover", onDragOver);
  target.addEventListener("dragleave", onDragLeave);
  target.addEventListener("drop", onDrop);
  return () => {
    target.removeEventListener("paste", onPaste);
    target.removeEventListener("dragover", onDragOver);
    target.removeEventListener("dragleave", onDragLeave);
    target.removeEventListener("drop", onDrop);
  };
}

// A data URL drawn like an attached file (for Python code that has image bytes). Decoded here, not
// fetched: the page's connect-src does not allow data: URLs.
export async function prepareImageUrl(url, name, maxSide, maxBytes) {
  const match = /^data:([^;,]*);base64,(.*)$/s.exec(url);
  if (!match) return JSON.stringify({ name, error: `${name} is not a base64 data: URL` });
  let bytes;
  try {
    bytes = Uint8Array.from(atob(match[2]), (c) => c.charCodeAt(0));
  } catch {
    return JSON.stringify({ name, error: `${name} is not valid base64` });
  }
  return JSON.stringify(await prepare(new File([bytes], name, { type: match[1] }), maxSide, maxBytes));
}
