// Hashes downloads off the page's main thread (static/storage.js sends each file's bytes here as
// they arrive, or the Blobs the browser read a file's segments into): MD5 in JavaScript costs CPU
// the page's thread should not pay. One worker hashes several files, each by its id, each file's
// pieces in the order they were sent.
//
//   {id, bytes}      add bytes to file `id`'s hash
//   {id, blob}       add a Blob's bytes (read here, so they never pass through the page)
//   {id, end: true}  answer {id, hex} (or {id, error} when a Blob could not be read) and forget the file
//   {id, drop: true} forget the file (a cancelled or failed download)

import {Md5} from "./md5.js";

const files = new Map();  // id -> {md5, queue: a promise, the pieces sent so far hashed in order}

self.onmessage = ({data}) => {
  const {id} = data;
  if (data.drop) {
    files.delete(id);
    return;
  }
  let file = files.get(id);
  if (file === undefined) files.set(id, file = {md5: new Md5(), queue: Promise.resolve()});
  if (data.bytes) {
    file.queue = file.queue.then(() => { file.md5.update(data.bytes); });
  } else if (data.blob) {
    file.queue = file.queue.then(async () => { file.md5.update(new Uint8Array(await data.blob.arrayBuffer())); });
  }
  if (data.end) {
    files.delete(id);
    file.queue.then(() => self.postMessage({id, hex: file.md5.hex()}),
                    (e) => self.postMessage({id, error: `could not read the downloaded bytes: ${e.message}`}));
  }
};
