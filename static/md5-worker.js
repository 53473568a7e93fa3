// Hashes downloads off the page's main thread (static/storage.js sends each file's bytes here as
// they arrive): MD5 in JavaScript costs about as much CPU as the download itself, and on the main
// thread it would slow the download and the page. One worker hashes several files, each by its id.
//
//   {id, bytes}      add bytes to file `id`'s hash (in order)
//   {id, end: true}  answer {id, hex} and forget the file
//   {id, drop: true} forget the file (a cancelled or failed download)

import {Md5} from "./md5.js";

const files = new Map();

self.onmessage = ({data}) => {
  const {id} = data;
  if (data.drop) {
    files.delete(id);
    return;
  }
  let md5 = files.get(id);
  if (md5 === undefined) files.set(id, md5 = new Md5());
  if (data.bytes) md5.update(data.bytes);
  if (data.end) {
    files.delete(id);
    self.postMessage({id, hex: md5.hex()});
  }
};
