"""secai-narrate: analysis/1 in, example/1 out, per fine-tuning stage (the examples themselves:
secai.dataset.examples)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import orjson

from secai import config
from secai.cli import AtomicOutput, Command, UsageError, entry
from secai.dataset.examples import STAGES, Skip, analysis_example, codefix_candidate, secret_digests


class Narrate(Command):
    name = "secai-narrate"
    description = ("Turn analyses into chat training examples (system, user, assistant: the format "
                   "`mlx_lm lora` reads) for one fine-tuning stage. `analysis`: the finding in the mlx "
                   "backend's own prompt, answered by the analysis as the JSON object that prompt asks for. "
                   "`codefix`: the finding and its code, answered by the fixed code, an explanation and "
                   "validation steps — only where the analysis has code context and a fix that parses for "
                   "its language (with --verify-fixes: and that the scanner which reported the finding no "
                   "longer reports on a fixed copy of the file); the others are counted on stderr. Secrets "
                   "are redacted in every text; empty and 'unknown' fields are left out. Output is "
                   "deterministic.")
    examples = """\
  secai-analyze findings.jsonl --source-root ~/src/shop | secai-narrate > examples-analysis.jsonl
  secai-narrate --stage codefix build/analyses.jsonl -o build/examples/codefix.jsonl
  secai-narrate --stage codefix build/analyses.jsonl --verify-fixes --source-root examples/demo-app \
      --scanners-dir .scanners --semgrep-config examples/semgrep-rules -o build/training/codefix.jsonl
  secai-parse trivy.json | secai-analyze | secai-narrate --stage analysis | head -1 | jq .messages

Skipped analyses are counted per reason on stderr (codefix: no code context, no fix, fix does not
parse, fix not verified, ...); with --verify-fixes also `verified N/M fixes (bandit a/b, checkov
c/d, semgrep e/f); not verified: ...` (-v: the verdict of each fix). Secret patterns are in
lib/secai/secrets.py; secai-split and secai-push check them too."""
    input_kind = "analysis/1"
    output_kind = "example/1"

    def add_arguments(self, p):
        p.add_argument("--stage", choices=STAGES, default="analysis",
                       help="analysis (stage 1, default) or codefix (stage 2)")
        v = p.add_argument_group("fix verification (stage codefix)")
        v.add_argument("--verify-fixes", action="store_true",
                       help="keep only fixes the scanner that reported the finding confirms: each fix is applied "
                            "to a copy of its file under --source-root, the file must still parse, and a re-run "
                            "of that scanner (bandit, checkov or semgrep, same rule) must no longer report the "
                            "finding; fixes that cannot be checked are dropped too. Prints `verified N/M fixes` "
                            "with per-scanner counts")
        v.add_argument("--source-root", metavar="DIR",
                       help="checkout the analyses' code context was read from (secai-analyze --source-root); "
                            "needed by --verify-fixes")
        v.add_argument("--scanners-dir", metavar="DIR",
                       help="directory holding checkov, semgrep and bandit, or a virtual environment with them "
                            "in bin/ (default: verify.scanners_dir, else PATH)")
        v.add_argument("--semgrep-config", metavar="PATH", action="append",
                       help="Semgrep rule file or directory the reports were made with; repeatable "
                            "(default: verify.semgrep_config)")
        v.add_argument("--verify-report", metavar="FILE",
                       help="also write the verification counts and each fix's verdict here (JSON)")

    def check(self, args):
        if args.verify_fixes and args.stage != "codefix":
            raise UsageError("--verify-fixes needs --stage codefix")
        if args.verify_fixes and not args.source_root:
            raise UsageError("--verify-fixes needs --source-root DIR (the checkout the analyses were made from)")
        if args.verify_report and not args.verify_fixes:
            raise UsageError("--verify-report needs --verify-fixes")

    def process(self, records):
        stage = self.args.stage
        verifying = self.args.verify_fixes
        records = list(self.progress(records, unit="analysis"))
        digests = secret_digests(records)
        skipped, seen = Counter(), set()
        fixes_dropped = 0
        made = []  # with --verify-fixes: (example, record, fix) to verify before writing
        for rec in records:
            try:
                if stage == "analysis":
                    (example, dropped), fix = analysis_example(rec, digests), None
                    fixes_dropped += dropped
                else:
                    example, fix = codefix_candidate(rec, digests)
            except Skip as why:
                skipped[str(why)] += 1
                continue
            if example["id"] in seen:
                skipped["duplicate"] += 1
                continue
            seen.add(example["id"])
            if verifying:
                made.append((example, rec, fix))
            else:
                yield example
        count = len(seen)
        if verifying:  # every candidate at once: each scanner runs once over all of its fixes
            verdicts = self._verify(made)
            for example, _, _ in made:
                if verdicts[example["id"]].verified:
                    yield example
                else:
                    skipped["fix not verified"] += 1
                    count -= 1
        why = ", ".join(f"{n} {reason}" for reason, n in sorted(skipped.items(), key=lambda kv: (-kv[1], kv[0])))
        note = f"; {fixes_dropped} fixes left out (code does not parse for its language)" if fixes_dropped else ""
        self.log(f"{len(records)} analyses -> {count} {stage} examples; {sum(skipped.values())} skipped"
                 + (f" ({why})" if why else "") + note)

    def _verify(self, made) -> dict:
        """Verdicts keyed by example id; logs `verified N/M fixes (...)` and writes --verify-report."""
        from secai.analysis.verify import Candidate, Scanners, describe, summary, verify

        a = self.args
        settings = config.section("verify")
        configs = a.semgrep_config if a.semgrep_config is not None else settings["semgrep_config"]
        scanners = Scanners.find(a.scanners_dir or settings["scanners_dir"],
                                 [configs] if isinstance(configs, str) else configs, settings["timeout"])
        candidates = [Candidate(ex["id"], rec["finding"], rec["code_context"], fix) for ex, rec, fix in made]
        verdicts = verify(candidates, Path(a.source_root), scanners)
        counts = summary(candidates, verdicts)
        self.log(describe(counts))
        if a.verbose:
            for c in candidates:
                v = verdicts[c.key]
                loc = c.context["path"]
                self.log(f"  {c.finding['tool']} {c.finding['rule_id']} {loc}: {v.reason}")
        if a.verify_report:
            report = {**counts,
                      "scanners": {name: scanners.paths.get(name) for name in sorted(("bandit", "checkov", "semgrep"))},
                      "fixes": [{"example_id": c.key, "finding_id": c.finding["id"], "tool": c.finding["tool"],
                                 "rule_id": c.finding["rule_id"], "path": c.context["path"],
                                 "verified": verdicts[c.key].verified, "reason": verdicts[c.key].reason}
                                for c in candidates]}
            with AtomicOutput(a.verify_report) as out:
                out.write(orjson.dumps(report, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n")
        return verdicts


def main():
    entry(Narrate)


if __name__ == "__main__":
    main()