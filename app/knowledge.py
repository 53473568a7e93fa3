"""Chat with your own files: chunking, embeddings, exact cosine search (plain Python).

    from app.knowledge import Knowledge
    knowledge = await session.knowledge()                # the page's: web-llm embeddings, IndexedDB
    info = await knowledge.add("notes.md", text, on_progress=print)
    hits = await knowledge.search("When is the launch?", k=3)
    hits[0].name, hits[0].heading, hits[0].text, hits[0].score
    messages = knowledge.with_context(messages, hits)   # numbered passages [1].. for the model to cite
    await knowledge.remove(info.id)

A file is read (text, Markdown, HTML, source code; PDF text arrives already extracted), cut into
chunks, each chunk embedded, and then stored in one write: the file record with its chunks and their
vectors (float32, base64) under ``file|<id>``. Nothing is stored before every chunk has its vector,
so a cancelled or failed ``add`` leaves nothing behind, and ``remove`` deletes the one record.

Chunking (sizes in characters; the embedding models take 512 tokens, about 2,000 characters of
English): Markdown headings (and HTML h1-h6) start a new section; a section is cut at blank lines
into paragraphs, packed up to ``CHUNK_CHARS`` (1,000); the next chunk starts with the end of the
previous one (up to ``OVERLAP_CHARS``, 200, whole paragraphs or the tail of one), so a fact that
straddles a cut is whole in one of them. A paragraph longer than a chunk is cut at sentence ends,
then at spaces. Each chunk is embedded as "<heading>\\n<text>", so a passage keeps its section's words.

Search is exact: the query's vector against every stored vector (all normalised: cosine = dot
product). In the page the vectors live in one Float32Array (static/bridge/vectors.js: 50k chunks in
tens of ms); :class:`PyVectorIndex` is the same in plain Python (``math.sumprod`` over one
``array('f')``: seconds at 50k chunks in Pyodide). ``bench/knowledge.py`` measures both.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import heapq
import math
import operator
import re
import time
from array import array
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any, Protocol

from app.errors import FileTooLarge, NoTextInFile, UnsupportedFile, UsageError

__all__ = ["CHUNK_CHARS", "EMBED_BATCH", "MAX_FILE_BYTES", "OVERLAP_CHARS", "Chunk", "Embedder", "FileInfo", "Hit",
           "Knowledge", "chunk_text", "file_kind", "html_text"]

MAX_FILE_BYTES = 20 * 1024 * 1024  # read into the page's memory whole; PDFs are mostly not text
CHUNK_CHARS = 1000
OVERLAP_CHARS = 200
EMBED_BATCH = 16  # chunks per embeddings.create call: progress and cancel between calls
FILE_PREFIX = "file|"

TEXT_SUFFIXES = frozenset("""txt text log csv tsv rst org tex py pyi js mjs cjs ts tsx jsx json jsonl yaml yml toml
ini cfg conf c h cc cpp hpp cs java kt go rs rb php swift scala sh bash zsh ps1 sql css scss r jl lua pl hs ml
xml svg vue svelte dart ex exs erl clj lisp el vim dockerfile makefile""".split())


class Embedder(Protocol):
    """Turns texts into vectors (``WebLLMBackend.embed``; tests use a hashed bag of words)."""

    async def embed(self, texts: list[str]) -> list[list[float]]: ...


@dataclass(frozen=True, slots=True)
class Chunk:
    text: str
    heading: str  # the section's heading ("" before the first one)
    start: int  # offset of the chunk's first character in the file's text


@dataclass(frozen=True, slots=True)
class FileInfo:
    id: str
    name: str
    kind: str  # "text" | "markdown" | "html" | "code" | "pdf"
    size: int  # bytes of the file as given
    chunks: int
    added: float  # seconds since the epoch


@dataclass(frozen=True, slots=True)
class Hit:
    """One retrieved passage: ``number`` is its citation number in :meth:`Knowledge.with_context`."""

    file_id: str
    name: str
    chunk: int
    heading: str
    text: str
    start: int
    score: float
    number: int = 0


# ---------------------------------------------------------------------------- reading


def file_kind(name: str) -> str:
    """What a file is, by its name: markdown, html, pdf, code, text (unknown names are read as text)."""
    suffix = name.rsplit(".", 1)[-1].lower() if "." in name else name.lower()
    if suffix in ("md", "markdown", "mdx"):
        return "markdown"
    if suffix in ("html", "htm", "xhtml"):
        return "html"
    if suffix == "pdf":
        return "pdf"
    if suffix in TEXT_SUFFIXES and suffix not in ("txt", "text", "log", "rst", "org"):
        return "code"
    return "text"


class _HtmlText(HTMLParser):
    """The text of an HTML page, headings as Markdown headings, script/style left out."""

    SKIP = frozenset(("script", "style", "noscript", "template", "head"))
    BLOCKS = frozenset(("p", "div", "li", "tr", "br", "section", "article", "pre", "blockquote", "table", "ul", "ol"))

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.skipping = 0

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag in self.SKIP:
            self.skipping += 1
        elif re.fullmatch(r"h[1-6]", tag):
            self.out.append("\n\n" + "#" * int(tag[1]) + " ")
        elif tag in self.BLOCKS:
            self.out.append("\n\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self.SKIP:
            self.skipping = max(0, self.skipping - 1)
        elif re.fullmatch(r"h[1-6]", tag) or tag in self.BLOCKS:
            self.out.append("\n\n")

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            self.out.append(re.sub(r"[ \t\r\n]+", " ", data))


def html_text(html: str) -> str:
    parser = _HtmlText()
    parser.feed(html)
    parser.close()
    return re.sub(r"\n[ \t]+", "\n", "".join(parser.out))


def decode_text(name: str, data: bytes | str) -> str:
    """The file's text; UnsupportedFile for what is not text (NUL bytes, not UTF-8 nor Latin-1 text)."""
    if isinstance(data, str):
        return data
    if b"\0" in data[:8192]:
        raise UnsupportedFile(f"{name}: this is not a text file (binary content); add text, Markdown, HTML, "
                              "PDF or source files")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("latin-1")


# ---------------------------------------------------------------------------- chunking

_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")


def _sections(text: str, markdown: bool) -> list[tuple[str, int, str]]:
    """(heading, offset, body) per section; Markdown headings outside code fences start one."""
    if not markdown:
        return [("", 0, text)]
    sections: list[tuple[str, int, str]] = []
    heading, start, offset, fenced = "", 0, 0, False
    for line in text.splitlines(keepends=True):
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
        found = None if fenced else _HEADING.match(line.rstrip("\n"))
        if found:
            sections.append((heading, start, text[start:offset]))
            heading, start = found.group(2), offset + len(line)
        offset += len(line)
    sections.append((heading, start, text[start:]))
    return [s for s in sections if s[2].strip()]


def _pieces(body: str, base: int, limit: int) -> list[tuple[int, str]]:
    """Paragraphs (offset, text) no longer than ``limit``: long ones cut at sentence ends, then spaces."""
    out: list[tuple[int, str]] = []
    for found in re.finditer(r"\S(?:.|\n(?![ \t]*\n))*", body):
        start, para = base + found.start(), found.group().rstrip()
        while len(para) > limit:
            window = para[:limit]
            cut = max(window.rfind(". "), window.rfind("? "), window.rfind("! "), window.rfind("\n"))
            if cut < limit // 2:
                cut = window.rfind(" ")
            cut = cut + 1 if cut >= limit // 4 else limit
            out.append((start, para[:cut].rstrip()))
            skipped = len(para[cut:]) - len(para[cut:].lstrip())
            start, para = start + cut + skipped, para[cut:].lstrip()
        if para:
            out.append((start, para))
    return out


def chunk_text(text: str, *, markdown: bool = True, size: int = CHUNK_CHARS,
               overlap: int = OVERLAP_CHARS) -> list[Chunk]:
    """Cut ``text`` into chunks of about ``size`` characters, ``overlap`` shared with the one before.

    >>> [c.heading for c in chunk_text("# A\\n\\none\\n\\n# B\\n\\ntwo")]
    ['A', 'B']
    """
    if size < 100 or not 0 <= overlap < size // 2:
        raise UsageError("chunk size must be >= 100 characters and overlap less than half of it")
    chunks: list[Chunk] = []
    for heading, offset, body in _sections(text, markdown):
        current: list[tuple[int, str]] = []
        length = 0
        for start, para in _pieces(body, offset, size - overlap):
            if current and length + 2 + len(para) > size:
                chunks.append(Chunk("\n\n".join(p for _, p in current), heading, current[0][0]))
                # Carry the end of this chunk into the next: whole paragraphs, or the tail of the last.
                carried: list[tuple[int, str]] = []
                kept = 0
                for s, p in reversed(current):
                    if kept + len(p) > overlap:
                        if not carried:
                            cut = p.find(" ", len(p) - overlap)
                            if cut != -1:
                                carried.append((s + cut + 1, p[cut + 1:]))
                        break
                    carried.insert(0, (s, p))
                    kept += len(p) + 2
                current, length = carried, sum(len(p) + 2 for _, p in carried)
            current.append((start, para))
            length += len(para) + 2
        if current:
            chunks.append(Chunk("\n\n".join(p for _, p in current), heading, current[0][0]))
    return chunks


# ---------------------------------------------------------------------------- vectors

def _pack(vectors: Sequence[Sequence[float]]) -> str:
    flat = array("f")
    for v in vectors:
        flat.extend(v)
    if flat.itemsize != 4:  # pragma: no cover - 'f' is 4 bytes wherever Python runs
        raise RuntimeError("float32 arrays are needed")
    return base64.b64encode(flat.tobytes()).decode("ascii")


def _normalised(vector: Sequence[float]) -> list[float]:
    norm = math.sqrt(math.fsum(x * x for x in vector))
    return [x / norm for x in vector] if norm else list(vector)


_dot: Callable[[Any, Any], float] = getattr(math, "sumprod", None) or (lambda a, b: sum(map(operator.mul, a, b)))


class VectorIndex(Protocol):
    """Rows of float32 vectors and exact top-k by dot product (PyVectorIndex; in the page the faster
    app.ffi.vectors.JsVectorIndex)."""

    def append(self, data: bytes, dims: int) -> None: ...
    def keep(self, rows: Sequence[int]) -> None: ...
    def search(self, query: Sequence[float], k: int,
               allowed: Sequence[int] | None = None) -> list[tuple[int, float]]: ...


class PyVectorIndex:
    """:class:`VectorIndex` in plain Python: one flat ``array('f')``, ``math.sumprod`` per row."""

    def __init__(self) -> None:
        self.dims = 0
        self.vectors = array("f")

    def append(self, data: bytes, dims: int) -> None:
        if self.vectors and dims != self.dims:
            raise UsageError(f"vectors of {dims} dimensions added to an index of {self.dims}")
        self.dims = dims
        self.vectors.frombytes(data)

    def keep(self, rows: Sequence[int]) -> None:
        d = self.dims
        kept = array("f")
        for row in rows:
            kept.extend(self.vectors[row * d:(row + 1) * d])
        self.vectors = kept

    def search(self, query: Sequence[float], k: int,
               allowed: Sequence[int] | None = None) -> list[tuple[int, float]]:
        d = self.dims
        q = array("f", query)
        flat = memoryview(self.vectors)
        rows = range(len(self.vectors) // d) if allowed is None else allowed
        best = heapq.nlargest(k, ((_dot(q, flat[r * d:(r + 1) * d]), r) for r in rows))
        return [(row, score) for score, row in best]


# ---------------------------------------------------------------------------- the library


class Knowledge:
    """The files the chat can read from (see the module docstring).

    ``embedder``: what turns texts into vectors; ``kv``: where file records are kept (get/put/delete/items,
    e.g. ``KvStore("knowledge")``); ``pdf_text``: turns a PDF's bytes into the text of each page (the
    page's pdf.js); ``ready``: awaited before the first embedding (loads the embedding model);
    ``index``: makes the vector index (default :class:`PyVectorIndex`).
    """

    def __init__(self, embedder: Embedder, kv: Any, *, pdf_text: Callable[[bytes], Awaitable[list[str]]] | None = None,
                 ready: Callable[[], Awaitable[None]] | None = None, clock: Callable[[], float] = time.time,
                 max_bytes: int = MAX_FILE_BYTES, index: Callable[[], Awaitable[VectorIndex]] | None = None) -> None:
        self._embedder = embedder
        self._kv = kv
        self._pdf_text = pdf_text
        self._ready = ready
        self._clock = clock
        self.max_bytes = max_bytes
        self._files: dict[str, dict[str, Any]] | None = None  # id -> record without vectors
        self._dims = 0
        self._make_index = index
        self._vectors: VectorIndex = PyVectorIndex()  # every chunk's vector, one row each
        self._where: list[tuple[str, int]] = []  # (file id, chunk index) per row
        self._loading: asyncio.Future | None = None
        self.last_search_s = 0.0

    # -- reading the store

    async def _load(self) -> None:
        if self._files is not None:
            return
        if self._loading is None:
            self._loading = asyncio.ensure_future(self._read_store())
        await asyncio.shield(self._loading)

    async def _read_store(self) -> None:
        files: dict[str, dict[str, Any]] = {}
        try:
            if self._make_index is not None:
                self._vectors = await self._make_index()
            items = await self._kv.items()
        except BaseException:
            self._loading = None
            raise
        for key, record in sorted(items.items(), key=lambda kv: (kv[1].get("added", 0), kv[0])):
            if key.startswith(FILE_PREFIX):
                files[record["id"]] = record
        self._files = {}
        for record in files.values():
            self._index(record)

    def _index(self, record: dict[str, Any]) -> None:
        dims = int(record["dims"])
        if self._dims and dims != self._dims:
            return  # embedded by another model: not comparable (kept in the store, left out here)
        self._dims = dims
        self._vectors.append(base64.b64decode(record["vectors"]), dims)
        self._where.extend((record["id"], i) for i in range(len(record["chunks"])))
        self._files[record["id"]] = {k: v for k, v in record.items() if k != "vectors"}  # type: ignore[index]

    # -- the API

    async def files(self) -> list[FileInfo]:
        """The files added, oldest first."""
        await self._load()
        return [self._info(r) for r in self._files.values()]  # type: ignore[union-attr]

    @staticmethod
    def _info(record: dict[str, Any]) -> FileInfo:
        return FileInfo(id=record["id"], name=record["name"], kind=record["kind"], size=record["size"],
                        chunks=len(record["chunks"]), added=record["added"])

    async def read(self, name: str, data: bytes | str) -> tuple[str, list[Chunk]]:
        """(kind, chunks) of a file, checked before anything is embedded or stored."""
        if not isinstance(name, str) or not name.strip():
            raise UsageError("a file needs a name")
        size = len(data.encode() if isinstance(data, str) else data)
        if size > self.max_bytes:
            raise FileTooLarge(f"{name} is {size / 2**20:.0f} MB; files of up to {self.max_bytes / 2**20:.0f} MB "
                               "can be added (split it, or add the parts you need)")
        kind = file_kind(name)
        if kind == "pdf":
            if isinstance(data, str) or not data.startswith(b"%PDF-"):
                raise UnsupportedFile(f"{name} is not a PDF file (it does not start with %PDF-)")
            if self._pdf_text is None:
                raise UnsupportedFile(f"{name}: PDF files cannot be read here (no PDF reader in this page)")
            try:
                pages = await self._pdf_text(bytes(data))
            except UnsupportedFile as exc:
                raise UnsupportedFile(f"{name}: {exc}") from None
            text = "".join(f"# Page {i}\n\n{page.strip()}\n\n" for i, page in enumerate(pages, 1) if page.strip())
            if not text:
                raise NoTextInFile(f"{name} has no text layer (a scan or images only): run OCR on it first, "
                                   "then add it again")
        else:
            text = decode_text(name, data)
            if kind == "html":
                text = html_text(text)
        chunks = chunk_text(text, markdown=kind in ("markdown", "html", "pdf"))
        if not chunks:
            raise NoTextInFile(f"{name} has no text to add")
        return kind, chunks

    async def add(self, name: str, data: bytes | str, *,
                  on_progress: Callable[[dict[str, Any]], None] | None = None) -> FileInfo:
        """Read, chunk and embed a file, then store it (all or nothing). Progress reports are
        ``{"stage": "reading" | "embedding" | "saving", "done", "total"}`` (chunks). Cancelling the
        awaiting task stops it between two batches; nothing is stored then."""
        def report(stage: str, done: int, total: int) -> None:
            if on_progress is not None:
                on_progress({"name": name, "stage": stage, "done": done, "total": total})

        report("reading", 0, 1)
        kind, chunks = await self.read(name, data)
        await self._load()
        if self._ready is not None:
            await self._ready()
        report("embedding", 0, len(chunks))
        vectors: list[list[float]] = []
        for begin in range(0, len(chunks), EMBED_BATCH):
            batch = chunks[begin:begin + EMBED_BATCH]
            got = await self._embedder.embed([_embedded_text(c) for c in batch])
            if len(got) != len(batch):
                raise RuntimeError(f"the embedding model returned {len(got)} vectors for {len(batch)} texts")
            vectors.extend(_normalised(v) for v in got)
            report("embedding", len(vectors), len(chunks))
        dims = len(vectors[0])
        if self._dims and dims != self._dims:
            raise UsageError(f"the files stored were embedded with {self._dims} dimensions and this model gives "
                             f"{dims}: remove them first")
        raw = data.encode() if isinstance(data, str) else bytes(data)
        file_id = hashlib.sha1(name.encode() + b"\0" + raw).hexdigest()[:16]
        record = {"id": file_id, "name": name, "kind": kind, "size": len(raw), "added": self._clock(), "dims": dims,
                  "chunks": [{"text": c.text, "heading": c.heading, "start": c.start} for c in chunks],
                  "vectors": _pack(vectors)}
        report("saving", len(chunks), len(chunks))
        # The same name and bytes again: one put replaces the record (the old one stays until then).
        await self._kv.put(FILE_PREFIX + file_id, record)
        if file_id in self._files:  # type: ignore[operator]
            self._forget(file_id)
        self._index(record)
        return self._info(record)

    async def remove(self, file_id: str) -> bool:
        """Delete a file and its vectors; False when there was no such file."""
        await self._load()
        if file_id not in self._files:  # type: ignore[operator]
            return False
        await self._kv.delete(FILE_PREFIX + file_id)
        self._forget(file_id)
        return True

    def _forget(self, file_id: str) -> None:
        del self._files[file_id]  # type: ignore[union-attr]
        keep = [i for i, (fid, _) in enumerate(self._where) if fid != file_id]
        self._vectors.keep(keep)
        self._where = [self._where[i] for i in keep]

    async def search(self, query: str, k: int = 5, *, files: Sequence[str] | None = None) -> list[Hit]:
        """The ``k`` passages closest to ``query`` (cosine), best first; ``files``: only these file ids."""
        if not isinstance(query, str) or not query.strip():
            raise UsageError("the query must be a non-empty string")
        if not isinstance(k, int) or k < 1:
            raise UsageError("k must be a positive integer")
        await self._load()
        if not self._where:
            return []
        if self._ready is not None:
            await self._ready()
        (vector,) = await self._embedder.embed([query])
        return self.nearest(_normalised(vector), k, files=files)

    def nearest(self, vector: Sequence[float], k: int, *, files: Sequence[str] | None = None) -> list[Hit]:
        """Exact top-k over every stored vector (``vector`` normalised)."""
        started = time.perf_counter()
        if not self._where:
            return []
        if len(vector) != self._dims:
            raise UsageError(f"the query vector has {len(vector)} dimensions, the stored ones {self._dims}")
        where = self._where
        allowed = None
        if files is not None:
            wanted = set(files)
            allowed = [i for i, (fid, _) in enumerate(where) if fid in wanted]
        best = self._vectors.search(vector, k, allowed)
        self.last_search_s = time.perf_counter() - started
        hits = []
        for number, (i, score) in enumerate(best, 1):
            file_id, chunk = where[i]
            record = self._files[file_id]  # type: ignore[index]
            c = record["chunks"][chunk]
            hits.append(Hit(file_id=file_id, name=record["name"], chunk=chunk, heading=c["heading"], text=c["text"],
                            start=c["start"], score=round(score, 6), number=number))
        return hits

    @staticmethod
    def context(hits: Sequence[Hit]) -> str:
        """The passages as one numbered block for the model: ``[1] name — heading`` then the text."""
        parts = []
        for hit in hits:
            where = f"{hit.name} — {hit.heading}" if hit.heading else hit.name
            parts.append(f"[{hit.number}] {where}\n{hit.text}")
        return ("Answer from these passages of the user's files when they help, and cite each one you use "
                "as [n]. Say so when they do not hold the answer.\n\n" + "\n\n".join(parts))

    @classmethod
    def with_context(cls, messages: Sequence[dict[str, Any]], hits: Sequence[Hit]) -> list[dict[str, Any]]:
        """``messages`` with the passages put in the last user message, before its question (a system
        message would be merged into the first one by web-llm, costing its KV-cache reuse)."""
        messages = list(messages)
        if not hits or not messages or messages[-1].get("role") != "user":
            return messages
        last = messages[-1]
        content = last.get("content")
        if isinstance(content, str):
            content = f"{cls.context(hits)}\n\nQuestion: {content}"
        else:  # parts (text + images): the passages go first, as a text part
            content = [{"type": "text", "text": cls.context(hits)}, *(content or [])]
        return [*messages[:-1], {**last, "content": content}]


def _embedded_text(chunk: Chunk) -> str:
    return f"{chunk.heading}\n{chunk.text}" if chunk.heading else chunk.text
