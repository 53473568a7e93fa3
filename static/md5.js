// MD5 (RFC 1321), fed in pieces: TVM's tensor manifest (tensor-cache.json / ndarray-cache.json)
// gives each shard's "md5sum", and SubtleCrypto has no MD5. MD5 is used only to notice a shard that
// is not the one the manifest describes (a changed or damaged file), not as a defence against
// anyone: the manifest comes from the same server as the shard.
//
//   const md5 = new Md5();
//   md5.update(bytes);            // any number of Uint8Arrays, in order
//   md5.hex();                    // "9e107d9d372bb6826bd81d3542a419d6"

// Per-round shift amounts, four per round.
const SHIFTS = [7, 12, 17, 22, 5, 9, 14, 20, 4, 11, 16, 23, 6, 10, 15, 21];
// K[i] = floor(|sin(i + 1)| * 2^32), as 32-bit integers.
const K = new Int32Array(64);
for (let i = 0; i < 64; i++) K[i] = Math.floor(Math.abs(Math.sin(i + 1)) * 0x100000000) | 0;

export class Md5 {
  constructor() {
    this.state = new Int32Array([0x67452301, 0xefcdab89 | 0, 0x98badcfe | 0, 0x10325476]);
    this.block = new Uint8Array(64);  // bytes not yet making a whole 64-byte block
    this.filled = 0;
    this.length = 0;  // bytes fed in total
    this.words = new Int32Array(16);
  }

  update(bytes) {
    let at = 0;
    const n = bytes.length;
    this.length += n;
    if (this.filled > 0) {
      const take = Math.min(64 - this.filled, n);
      this.block.set(bytes.subarray(0, take), this.filled);
      this.filled += take;
      at = take;
      if (this.filled < 64) return this;
      this.compress(this.block, 0);
      this.filled = 0;
    }
    for (; at + 64 <= n; at += 64) this.compress(bytes, at);
    if (at < n) {
      this.block.set(bytes.subarray(at), 0);
      this.filled = n - at;
    }
    return this;
  }

  // The digest as 32 lowercase hex digits. The object is spent afterwards.
  hex() {
    const bits = this.length * 8;
    const tail = new Uint8Array(this.filled < 56 ? 64 : 128);
    tail.set(this.block.subarray(0, this.filled));
    tail[this.filled] = 0x80;
    const end = tail.length - 8;
    const low = bits % 0x100000000, high = Math.floor(bits / 0x100000000);
    for (let i = 0; i < 4; i++) {
      tail[end + i] = (low >>> (8 * i)) & 0xff;
      tail[end + 4 + i] = (high >>> (8 * i)) & 0xff;
    }
    for (let at = 0; at < tail.length; at += 64) this.compress(tail, at);
    let out = "";
    for (const word of this.state) {
      for (let i = 0; i < 4; i++) out += ((word >>> (8 * i)) & 0xff).toString(16).padStart(2, "0");
    }
    return out;
  }

  // One 64-byte block of `bytes` from `at` into the state.
  compress(bytes, at) {
    const w = this.words;
    for (let j = 0; j < 16; j++) {
      const o = at + 4 * j;
      w[j] = bytes[o] | (bytes[o + 1] << 8) | (bytes[o + 2] << 16) | (bytes[o + 3] << 24);
    }
    const s = this.state;
    let a = s[0], b = s[1], c = s[2], d = s[3];
    for (let i = 0; i < 64; i++) {
      let f, g;
      if (i < 16) { f = (b & c) | (~b & d); g = i; }
      else if (i < 32) { f = (d & b) | (~d & c); g = (5 * i + 1) & 15; }
      else if (i < 48) { f = b ^ c ^ d; g = (3 * i + 5) & 15; }
      else { f = c ^ (b | ~d); g = (7 * i) & 15; }
      const sum = (a + f + K[i] + w[g]) | 0;
      const r = SHIFTS[((i >> 4) << 2) | (i & 3)];
      a = d; d = c; c = b;
      b = (b + ((sum << r) | (sum >>> (32 - r)))) | 0;
    }
    s[0] = (s[0] + a) | 0; s[1] = (s[1] + b) | 0; s[2] = (s[2] + c) | 0; s[3] = (s[3] + d) | 0;
  }
}
