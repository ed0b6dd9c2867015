"""secai-analyze: finding/1 in, analysis/1 out — explained by the knowledge base or an MLX model."""

from __future__ import annotations

from itertools import islice
from pathlib import Path

from secai import config
from secai.analysis import compose as kb_backend
from secai.cache import Cache, content_hash, key
from secai.secrets import scrub_tree
from secai.cli import Command, UsageError, entry


class Analyze(Command):
    name = "secai-analyze"
    description = ("Explain each finding: summary, impact, remediation, prevention, risk and, when it can "
                   "be given, a concrete fix. The `kb` backend (default, offline, deterministic) composes it "
                   "from the knowledge base and the finding's own texts; the `mlx` backend asks an MLX "
                   "model, and falls back to the kb analysis (recorded in producer.fallback) when the "
                   "model's reply is unusable. Results are cached per finding.")
    examples = """\
  secai-parse trivy.json | secai-analyze > analyses.jsonl
  secai-analyze build/findings.jsonl --source-root ~/src/shop -o build/analyses.jsonl
  secai-analyze findings.jsonl --backend mlx --model build/models/base/tiny-olmo2
  secai-analyze findings.jsonl --backend mlx --model ~/shared-olmo-models/base/OLMo-2-1B-mlx-q4 \\
      --adapter ~/shared-olmo-models/fine-tuned/secai-analysis-20260101-120000/adapters

The cache (analyze.cache_dir) is keyed by finding id and content (all of it but `source`, so a
forged report with the same id is never served for the real one), backend, model and adapter
content hashes, prompt version, knowledge-base version and code context: a re-run on the same
findings costs no model call; one new finding costs one analysis. A corrupt entry is recomputed."""
    input_kind = "finding/1"
    output_kind = "analysis/1"

    def add_arguments(self, p):
        p.add_argument("--backend", choices=("kb", "mlx"), help="who writes the analysis (default: analyze.backend)")
        p.add_argument("--model", metavar="DIR", help="MLX model directory for --backend mlx (default: analyze.model)")
        p.add_argument("--adapter", metavar="DIR", help="LoRA adapter directory (mlx-lm format) for the model")
        p.add_argument("--source-root", metavar="DIR", help="checkout the findings' paths are relative to: "
                                                            "adds code context (paths outside it are refused)")
        p.add_argument("--context-lines", type=int, metavar="N", help="lines of code around a finding (default: analyze.context_lines)")
        p.add_argument("--batch-size", type=int, metavar="N", help="prompts generated together (default: analyze.batch_size)")
        p.add_argument("--max-tokens", type=int, metavar="N", help="reply length limit in tokens (default: analyze.max_tokens)")
        p.add_argument("--cache", metavar="DIR", help="cache directory (default: analyze.cache_dir)")
        p.add_argument("--no-cache", action="store_true", help="neither read nor write the cache")
        # -- similar past findings (secai-index)
        p.add_argument("--index", metavar="DIR", help="secai-index directory: record each finding's most similar "
                                                      "indexed findings in similar[] and give them to the model "
                                                      "(default: analyze.index)")
        p.add_argument("--similar", type=int, metavar="K", help="similar findings per finding with --index (default: analyze.similar)")

    def check(self, args):
        self.args = args
        if self.setting("backend") == "mlx" and not self.setting("model"):
            raise UsageError("--backend mlx needs --model DIR (or analyze.model)")

    def setting(self, name: str):
        value = getattr(self.args, name)
        return config.get("analyze", name) if value is None else value

    def process(self, findings):
        a = self.args
        backend = self.setting("backend")
        root = Path(a.source_root) if a.source_root else None
        cache = Cache(None if a.no_cache else (a.cache or config.get("analyze", "cache_dir")), kind="analysis/1")
        model = None
        if backend == "mlx":
            path = self.setting("model")
            from secai.analysis.mlx import Model

            model = Model(path, a.adapter, self.setting("max_tokens"))
        findings = list(findings)
        # -- similar past findings (secai-index): one look-up for all; only findings new to the index are embedded
        self.similar = None
        if self.setting("index") and self.setting("similar") > 0:
            from secai.analysis.similar import SimilarityIndex

            found = SimilarityIndex.load(self.setting("index")).similar(findings, self.setting("similar"))
            self.similar = {f["id"]: s for f, s in zip(findings, found)}
        # --
        # every secret hash of the input: a secret one scanner hashes may sit unhashed in another's code
        hashes = tuple({f["secret"]["sha256"] for f in findings if "secret" in f})
        self.stats = {"cached": 0, "analysed": 0, "fallback": 0, "context": 0, "refused": 0}
        batch = self.setting("batch_size")
        it = iter(self.progress(findings, unit="finding"))
        while chunk := list(islice(it, batch)):
            yield from self._chunk(chunk, backend, model, root, cache, hashes)
        s = self.stats
        self.log(f"{len(findings)} analyses ({s['cached']} cached, {s['analysed']} new, {s['fallback']} fell back "
                 f"to kb, {s['context']} with code context, {s['refused']} paths refused)")
        if cache.corrupt:
            self.log(f"warning: {cache.corrupt} corrupt cache entries recomputed")

    def _chunk(self, findings, backend, model, root, cache, hashes):
        from secai.analysis.mlx import PROMPT_VERSION

        kb_version = kb_backend.kb_version()
        producer = {"backend": backend, "kb_version": kb_version,
                    "prompt_version": PROMPT_VERSION if model else kb_backend.COMPOSER_VERSION}
        if model:
            producer.update(model=model.path, model_hash=model.hash)
            if model.adapter:
                producer.update(adapter=model.adapter, adapter_hash=model.adapter_hash)
        out, todo = [], []
        for finding in findings:
            context = self._context(finding, root, hashes)
            sim = self.similar[finding["id"]] if self.similar is not None else []  # secai-index: ids key the cache
            k = key(finding["id"], content_hash(finding), producer, context,
                    *([[s["id"] for s in sim]] if self.similar is not None else []))
            record = cache.get(k)
            if record is None:
                record = {"schema": "analysis/1", "id": finding["id"], "finding": finding, "similar": sim,
                          "producer": dict(producer),
                          "analysis": kb_backend.compose(finding, context, root)}
                if context:
                    record["code_context"] = context
                todo.append((k, record))
            else:  # computed from this finding's content; the record carries this run's `source`
                record = {**record, "finding": finding}
                self.stats["cached"] += 1
            out.append(record)
        if model and todo:
            from secai.analysis.mlx import messages, parse_reply

            chats = [messages(r["finding"], r.get("code_context"), r["similar"]) for _, r in todo]
            for (_, record), reply in zip(todo, model.generate(chats)):
                analysis, why = parse_reply(reply)
                if analysis is None:
                    record["producer"]["fallback"] = why
                    self.stats["fallback"] += 1
                else:
                    record["analysis"] = analysis
        for k, record in todo:  # no secret in any field, whoever wrote it: scanner, code or model (secai.secrets)
            record.update(scrub_tree(record, hashes))
            cache.put(k, record)
            self.stats["analysed"] += 1
        return [scrub_tree(r, hashes) for r in out]

    def _context(self, finding, root, hashes):
        if root is None:
            return None
        from secai.analysis.context import read_context

        context, skip = read_context(finding, root, self.setting("context_lines"), hashes=hashes)
        if context:
            self.stats["context"] += 1
        elif skip.refused:
            self.stats["refused"] += 1
            self.log(f"warning: {finding['id']}: {skip}")
        return context


def main():
    entry(Analyze)


if __name__ == "__main__":
    main()
