// MD5 (RFC 1321), fed in pieces: TVM's tensor manifest (tensor-cache.json / ndarray-cache.json)
// gives each shard's "md5sum", and SubtleCrypto has no MD5. MD5 is used only to notice a shard that
// is not the one the manifest describes (a changed or damaged file), not as a defence against
// anyone: the manifest comes from the same server as the shard.
//
//   const md5 = new Md5();
//   md5.update(bytes);            // any number of Uint8Arrays, in order
//   md5.hex();                    // "9e107d9d372bb6826bd81d3542a419d6"

// Blocks are read as 32-bit words straight from the bytes where the platform is little-endian (MD5's
// own order, and every browser's) and the bytes are 4-aligned; otherwise a block is copied first.
const LITTLE = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

// One 64-byte block, the 16 words x[k..k+15], into the state. The 64 steps are written out, each
// a + f(b, c, d) + word + K[i] rotated left and added to b, with K[i] = floor(|sin(i + 1)| * 2^32)
// as a literal: a loop choosing the function, word and shift per step runs at a third of the speed,
// and a helper function per step makes V8 box every 32-bit result.
function compress(state, x, k) {
  let a = state[0], b = state[1], c = state[2], d = state[3], n;
  n = (a + ((b & c) | (~b & d)) + x[k] + 0xd76aa478) | 0; a = (((n << 7) | (n >>> 25)) + b) | 0;
  n = (d + ((a & b) | (~a & c)) + x[k + 1] + 0xe8c7b756) | 0; d = (((n << 12) | (n >>> 20)) + a) | 0;
  n = (c + ((d & a) | (~d & b)) + x[k + 2] + 0x242070db) | 0; c = (((n << 17) | (n >>> 15)) + d) | 0;
  n = (b + ((c & d) | (~c & a)) + x[k + 3] + 0xc1bdceee) | 0; b = (((n << 22) | (n >>> 10)) + c) | 0;
  n = (a + ((b & c) | (~b & d)) + x[k + 4] + 0xf57c0faf) | 0; a = (((n << 7) | (n >>> 25)) + b) | 0;
  n = (d + ((a & b) | (~a & c)) + x[k + 5] + 0x4787c62a) | 0; d = (((n << 12) | (n >>> 20)) + a) | 0;
  n = (c + ((d & a) | (~d & b)) + x[k + 6] + 0xa8304613) | 0; c = (((n << 17) | (n >>> 15)) + d) | 0;
  n = (b + ((c & d) | (~c & a)) + x[k + 7] + 0xfd469501) | 0; b = (((n << 22) | (n >>> 10)) + c) | 0;
  n = (a + ((b & c) | (~b & d)) + x[k + 8] + 0x698098d8) | 0; a = (((n << 7) | (n >>> 25)) + b) | 0;
  n = (d + ((a & b) | (~a & c)) + x[k + 9] + 0x8b44f7af) | 0; d = (((n << 12) | (n >>> 20)) + a) | 0;
  n = (c + ((d & a) | (~d & b)) + x[k + 10] + 0xffff5bb1) | 0; c = (((n << 17) | (n >>> 15)) + d) | 0;
  n = (b + ((c & d) | (~c & a)) + x[k + 11] + 0x895cd7be) | 0; b = (((n << 22) | (n >>> 10)) + c) | 0;
  n = (a + ((b & c) | (~b & d)) + x[k + 12] + 0x6b901122) | 0; a = (((n << 7) | (n >>> 25)) + b) | 0;
  n = (d + ((a & b) | (~a & c)) + x[k + 13] + 0xfd987193) | 0; d = (((n << 12) | (n >>> 20)) + a) | 0;
  n = (c + ((d & a) | (~d & b)) + x[k + 14] + 0xa679438e) | 0; c = (((n << 17) | (n >>> 15)) + d) | 0;
  n = (b + ((c & d) | (~c & a)) + x[k + 15] + 0x49b40821) | 0; b = (((n << 22) | (n >>> 10)) + c) | 0;

  n = (a + ((b & d) | (c & ~d)) + x[k + 1] + 0xf61e2562) | 0; a = (((n << 5) | (n >>> 27)) + b) | 0;
  n = (d + ((a & c) | (b & ~c)) + x[k + 6] + 0xc040b340) | 0; d = (((n << 9) | (n >>> 23)) + a) | 0;
  n = (c + ((d & b) | (a & ~b)) + x[k + 11] + 0x265e5a51) | 0; c = (((n << 14) | (n >>> 18)) + d) | 0;
  n = (b + ((c & a) | (d & ~a)) + x[k] + 0xe9b6c7aa) | 0; b = (((n << 20) | (n >>> 12)) + c) | 0;
  n = (a + ((b & d) | (c & ~d)) + x[k + 5] + 0xd62f105d) | 0; a = (((n << 5) | (n >>> 27)) + b) | 0;
  n = (d + ((a & c) | (b & ~c)) + x[k + 10] + 0x02441453) | 0; d = (((n << 9) | (n >>> 23)) + a) | 0;
  n = (c + ((d & b) | (a & ~b)) + x[k + 15] + 0xd8a1e681) | 0; c = (((n << 14) | (n >>> 18)) + d) | 0;
  n = (b + ((c & a) | (d & ~a)) + x[k + 4] + 0xe7d3fbc8) | 0; b = (((n << 20) | (n >>> 12)) + c) | 0;
  n = (a + ((b & d) | (c & ~d)) + x[k + 9] + 0x21e1cde6) | 0; a = (((n << 5) | (n >>> 27)) + b) | 0;
  n = (d + ((a & c) | (b & ~c)) + x[k + 14] + 0xc33707d6) | 0; d = (((n << 9) | (n >>> 23)) + a) | 0;
  n = (c + ((d & b) | (a & ~b)) + x[k + 3] + 0xf4d50d87) | 0; c = (((n << 14) | (n >>> 18)) + d) | 0;
  n = (b + ((c & a) | (d & ~a)) + x[k + 8] + 0x455a14ed) | 0; b = (((n << 20) | (n >>> 12)) + c) | 0;
  n = (a + ((b & d) | (c & ~d)) + x[k + 13] + 0xa9e3e905) | 0; a = (((n << 5) | (n >>> 27)) + b) | 0;
  n = (d + ((a & c) | (b & ~c)) + x[k + 2] + 0xfcefa3f8) | 0; d = (((n << 9) | (n >>> 23)) + a) | 0;
  n = (c + ((d & b) | (a & ~b)) + x[k + 7] + 0x676f02d9) | 0; c = (((n << 14) | (n >>> 18)) + d) | 0;
  n = (b + ((c & a) | (d & ~a)) + x[k + 12] + 0x8d2a4c8a) | 0; b = (((n << 20) | (n >>> 12)) + c) | 0;

  n = (a + (b ^ c ^ d) + x[k + 5] + 0xfffa3942) | 0; a = (((n << 4) | (n >>> 28)) + b) | 0;
  n = (d + (a ^ b ^ c) + x[k + 8] + 0x8771f681) | 0; d = (((n << 11) | (n >>> 21)) + a) | 0;
  n = (c + (d ^ a ^ b) + x[k + 11] + 0x6d9d6122) | 0; c = (((n << 16) | (n >>> 16)) + d) | 0;
  n = (b + (c ^ d ^ a) + x[k + 14] + 0xfde5380c) | 0; b = (((n << 23) | (n >>> 9)) + c) | 0;
  n = (a + (b ^ c ^ d) + x[k + 1] + 0xa4beea44) | 0; a = (((n << 4) | (n >>> 28)) + b) | 0;
  n = (d + (a ^ b ^ c) + x[k + 4] + 0x4bdecfa9) | 0; d = (((n << 11) | (n >>> 21)) + a) | 0;
  n = (c + (d ^ a ^ b) + x[k + 7] + 0xf6bb4b60) | 0; c = (((n << 16) | (n >>> 16)) + d) | 0;
  n = (b + (c ^ d ^ a) + x[k + 10] + 0xbebfbc70) | 0; b = (((n << 23) | (n >>> 9)) + c) | 0;
  n = (a + (b ^ c ^ d) + x[k + 13] + 0x289b7ec6) | 0; a = (((n << 4) | (n >>> 28)) + b) | 0;
  n = (d + (a ^ b ^ c) + x[k] + 0xeaa127fa) | 0; d = (((n << 11) | (n >>> 21)) + a) | 0;
  n = (c + (d ^ a ^ b) + x[k + 3] + 0xd4ef3085) | 0; c = (((n << 16) | (n >>> 16)) + d) | 0;
  n = (b + (c ^ d ^ a) + x[k + 6] + 0x04881d05) | 0; b = (((n << 23) | (n >>> 9)) + c) | 0;
  n = (a + (b ^ c ^ d) + x[k + 9] + 0xd9d4d039) | 0; a = (((n << 4) | (n >>> 28)) + b) | 0;
  n = (d + (a ^ b ^ c) + x[k + 12] + 0xe6db99e5) | 0; d = (((n << 11) | (n >>> 21)) + a) | 0;
  n = (c + (d ^ a ^ b) + x[k + 15] + 0x1fa27cf8) | 0; c = (((n << 16) | (n >>> 16)) + d) | 0;
  n = (b + (c ^ d ^ a) + x[k + 2] + 0xc4ac5665) | 0; b = (((n << 23) | (n >>> 9)) + c) | 0;

  n = (a + (c ^ (b | ~d)) + x[k] + 0xf4292244) | 0; a = (((n << 6) | (n >>> 26)) + b) | 0;
  n = (d + (b ^ (a | ~c)) + x[k + 7] + 0x432aff97) | 0; d = (((n << 10) | (n >>> 22)) + a) | 0;
  n = (c + (a ^ (d | ~b)) + x[k + 14] + 0xab9423a7) | 0; c = (((n << 15) | (n >>> 17)) + d) | 0;
  n = (b + (d ^ (c | ~a)) + x[k + 5] + 0xfc93a039) | 0; b = (((n << 21) | (n >>> 11)) + c) | 0;
  n = (a + (c ^ (b | ~d)) + x[k + 12] + 0x655b59c3) | 0; a = (((n << 6) | (n >>> 26)) + b) | 0;
  n = (d + (b ^ (a | ~c)) + x[k + 3] + 0x8f0ccc92) | 0; d = (((n << 10) | (n >>> 22)) + a) | 0;
  n = (c + (a ^ (d | ~b)) + x[k + 10] + 0xffeff47d) | 0; c = (((n << 15) | (n >>> 17)) + d) | 0;
  n = (b + (d ^ (c | ~a)) + x[k + 1] + 0x85845dd1) | 0; b = (((n << 21) | (n >>> 11)) + c) | 0;
  n = (a + (c ^ (b | ~d)) + x[k + 8] + 0x6fa87e4f) | 0; a = (((n << 6) | (n >>> 26)) + b) | 0;
  n = (d + (b ^ (a | ~c)) + x[k + 15] + 0xfe2ce6e0) | 0; d = (((n << 10) | (n >>> 22)) + a) | 0;
  n = (c + (a ^ (d | ~b)) + x[k + 6] + 0xa3014314) | 0; c = (((n << 15) | (n >>> 17)) + d) | 0;
  n = (b + (d ^ (c | ~a)) + x[k + 13] + 0x4e0811a1) | 0; b = (((n << 21) | (n >>> 11)) + c) | 0;
  n = (a + (c ^ (b | ~d)) + x[k + 4] + 0xf7537e82) | 0; a = (((n << 6) | (n >>> 26)) + b) | 0;
  n = (d + (b ^ (a | ~c)) + x[k + 11] + 0xbd3af235) | 0; d = (((n << 10) | (n >>> 22)) + a) | 0;
  n = (c + (a ^ (d | ~b)) + x[k + 2] + 0x2ad7d2bb) | 0; c = (((n << 15) | (n >>> 17)) + d) | 0;
  n = (b + (d ^ (c | ~a)) + x[k + 9] + 0xeb86d391) | 0; b = (((n << 21) | (n >>> 11)) + c) | 0;
  state[0] = (state[0] + a) | 0; state[1] = (state[1] + b) | 0;
  state[2] = (state[2] + c) | 0; state[3] = (state[3] + d) | 0;
}

export class Md5 {
  constructor() {
    this.state = new Int32Array([0x67452301, 0xefcdab89 | 0, 0x98badcfe | 0, 0x10325476]);
    this.block = new Uint8Array(64);  // bytes not yet making a whole 64-byte block
    this.blockWords = new Int32Array(16);
    this.filled = 0;
    this.length = 0;  // bytes fed in total
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
      this.compressBlock(this.block, 0);
      this.filled = 0;
    }
    const whole = (n - at) >> 6;
    if (whole > 0 && LITTLE && (bytes.byteOffset + at) % 4 === 0) {
      const words = new Int32Array(bytes.buffer, bytes.byteOffset + at, whole * 16);
      for (let k = 0; k < words.length; k += 16) compress(this.state, words, k);
      at += whole * 64;
    } else {
      for (; at + 64 <= n; at += 64) this.compressBlock(bytes, at);
    }
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
    for (let at = 0; at < tail.length; at += 64) this.compressBlock(tail, at);
    let out = "";
    for (const word of this.state) {
      for (let i = 0; i < 4; i++) out += ((word >>> (8 * i)) & 0xff).toString(16).padStart(2, "0");
    }
    return out;
  }

  // One 64-byte block of `bytes` from `at`, its words assembled little-endian byte by byte.
  compressBlock(bytes, at) {
    const w = this.blockWords;
    for (let j = 0; j < 16; j++) {
      const o = at + 4 * j;
      w[j] = bytes[o] | (bytes[o + 1] << 8) | (bytes[o + 2] << 16) | (bytes[o + 3] << 24);
    }
    compress(this.state, w, 0);
  }
}
