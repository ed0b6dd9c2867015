"""secai-analyze: finding/1 in, analysis/1 out — explained by the knowledge base or an MLX model (the\nanalyses themselves: secai.analysis.explain)."""

from __future__ import annotations

from pathlib import Path

from secai import config
from secai.analysis.autofix import semgrep_executable
from secai.analysis.explain import Stats, analyses, similar_findings, worker_count
from secai.cache import Cache
from secai.cli import Command, entry
from secai.errors import UsageError


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
  secai-index update --index build/index build/analyses.jsonl   # keep past analyses for the prompt
  secai-analyze findings.jsonl --backend mlx --model ~/shared-olmo-models/base/TEACHER \\
      --index build/index --similar 3 --semgrep-rules rules/ --source-root ~/src/shop
  secai-analyze findings.jsonl --backend mlx --model ~/shared-olmo-models/base/OLMo-2-1B-mlx-q4 \\
      --adapter ~/shared-olmo-models/fine-tuned/secai-analysis-20260101-120000/adapters

The cache (analyze.cache_dir) is keyed by finding id and content (all of it but `source`, so a
forged report with the same id is never served for the real one), backend, model and adapter
content hashes, prompt version, knowledge-base version and code context (and, with a model, the
prompt itself: the rule's knowledge and the similar findings' past analyses in it): a re-run on the same
findings costs no model call; one new finding costs one analysis. A corrupt entry is recomputed."""
    input_kind = "finding/1"
    output_kind = "analysis/1"
    config_section = "analyze"

    def add_arguments(self, p):
        p.add_argument("--backend", choices=("kb", "mlx"), help="who writes the analysis (default: analyze.backend)")
        p.add_argument("--model", metavar="DIR", help="MLX model directory for --backend mlx (default: analyze.model)")
        p.add_argument("--adapter", metavar="DIR", help="LoRA adapter directory (mlx-lm format) for the model")
        p.add_argument("--source-root", metavar="DIR", help="checkout the findings' paths are relative to: "
                                                            "adds code context (paths outside it are refused)")
        p.add_argument("--semgrep-rules", metavar="PATH", help="the rule files (folder or file) the semgrep "
                                                               "reports were made with: their rules' knowledge "
                                                               "(default: analyze.semgrep_rules)")
        p.add_argument("--scanners-dir", metavar="DIR", help="directory holding semgrep (or a virtual environment "
                                                             "with it in bin/): a semgrep finding whose rule has an "
                                                             "autofix gets the fix semgrep itself makes on a copy of "
                                                             "its file (with --semgrep-rules and --source-root)")
        p.add_argument("--context-lines", type=int, metavar="N", help="lines of code around a finding (default: analyze.context_lines)")
        p.add_argument("--batch-size", type=int, metavar="N", help="prompts generated together (default: analyze.batch_size)")
        p.add_argument("--workers", type=int, metavar="N", help="processes for kb analyses (0: one per CPU; at most one "
                                                                "per 500 findings; default: analyze.workers)")
        p.add_argument("--max-tokens", type=int, metavar="N", help="reply length limit in tokens (default: analyze.max_tokens)")
        p.add_argument("--cache", metavar="DIR", help="cache directory (default: analyze.cache_dir)")
        p.add_argument("--no-cache", action="store_true", help="neither read nor write the cache")
        # -- similar past findings (secai-index)
        p.add_argument("--index", metavar="DIR", help="secai-index directory: record each finding's most similar "
                                                      "indexed findings in similar[] and give them to the model "
                                                      "(default: analyze.index)")
        p.add_argument("--similar", type=int, metavar="K", help="similar findings per finding with --index (default: analyze.similar)")

    def check(self, args):
        if self.setting("backend") == "mlx" and not self.setting("model"):
            raise UsageError("--backend mlx needs --model DIR (or analyze.model)")

    def process(self, findings):
        a = self.args
        backend = self.setting("backend")
        root = Path(a.source_root) if a.source_root else None
        cache = Cache(None if a.no_cache else (a.cache or config.get("analyze", "cache_dir")), kind="analysis/1")
        model = None
        if backend == "mlx":
            from secai.analysis.mlx import Model

            model = Model(self.setting("model"), a.adapter, self.setting("max_tokens"))
        findings = list(findings)
        similar = None
        if self.setting("index") and self.setting("similar") > 0:
            similar = similar_findings(findings, self.setting("index"), self.setting("similar"))
        semgrep = semgrep_executable(a.scanners_dir)
        if a.scanners_dir and semgrep is None:
            self.log(f"warning: no semgrep in {a.scanners_dir}: no fixes from Semgrep rules' autofixes")
        stats = Stats()
        yield from analyses(findings, backend=backend, cache=cache, stats=stats, log=self.log, model=model, root=root,
                            context_lines=self.setting("context_lines") if root else 0,
                            batch_size=self.setting("batch_size"), similar=similar,
                            semgrep_rules=Path(rules) if (rules := self.setting("semgrep_rules")) else None,
                            semgrep=semgrep, workers=worker_count(self.setting("workers"), len(findings), model),
                            progress=lambda xs: self.progress(xs, unit="finding"))
        s = stats
        self.log(f"{len(findings)} analyses ({s.cached} cached, {s.analysed} new, {s.fallback} fell back "
                 f"to kb, {s.context} with code context, {s.refused} paths refused)")
        if cache.corrupt:
            self.log(f"warning: {cache.corrupt} corrupt cache entries recomputed")


def main():
    entry(Analyze)


if __name__ == "__main__":
    main()
