// Exact nearest-neighbour search over float32 vectors, for app/knowledge.py (app/ffi/vectors.py).
//
// Python decides what is stored and what a row means; this only keeps the vectors in one
// Float32Array and scores them: the dot products of a search over 50k chunks x 384 dimensions are
// ~19 M multiply-adds, tens of milliseconds here and seconds in Pyodide's Python (bench/knowledge.py).

export class VectorIndex {
  constructor() {
    this.dims = 0;
    this.count = 0;
    this.data = new Float32Array(0);
  }

  // Rows from the bytes of little-endian float32 vectors, `dims` each, appended in order.
  append(bytes, dims) {
    if (this.count > 0 && dims !== this.dims) throw new Error(`vectors of ${dims} dimensions added to an index of ${this.dims}`);
    const copy = new Uint8Array(bytes);  // aligned for a Float32Array view
    const added = new Float32Array(copy.buffer, 0, copy.byteLength / 4);
    const needed = (this.count * dims) + added.length;
    if (needed > this.data.length) {
      const grown = new Float32Array(Math.max(needed, this.data.length * 2));
      grown.set(this.data.subarray(0, this.count * this.dims));
      this.data = grown;
    }
    this.dims = dims;
    this.data.set(added, this.count * dims);
    this.count += added.length / dims;
    return this.count;
  }

  // Keeps only `rows` (ascending), in that order: row i of the result is rows[i] before.
  keep(rows) {
    const d = this.dims;
    rows.forEach((row, i) => { if (row !== i) this.data.copyWithin(i * d, row * d, (row + 1) * d); });
    this.count = rows.length;
    return this.count;
  }

  // The k best rows by dot product with `query` as [[row, score], ...], best first; `allowed`: a
  // list of rows to consider (null: all).
  search(query, k, allowed = null) {
    const d = this.dims, data = this.data, q = Float32Array.from(query);
    const best = [];  // [score, row], kept sorted descending, at most k
    const consider = (row) => {
      let score = 0;
      const base = row * d;
      for (let j = 0; j < d; j++) score += q[j] * data[base + j];
      if (best.length < k || score > best[best.length - 1][0]) {
        let at = best.length;
        while (at > 0 && best[at - 1][0] < score) at--;
        best.splice(at, 0, [score, row]);
        if (best.length > k) best.pop();
      }
    };
    if (allowed === null) for (let row = 0; row < this.count; row++) consider(row);
    else for (const row of allowed) consider(row);
    return JSON.stringify(best.map(([score, row]) => [row, score]));
  }
}

export function createIndex() { return new VectorIndex(); }
