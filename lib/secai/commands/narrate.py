"""secai-narrate: analysis/1 in, example/1 out, per fine-tuning stage (the examples themselves:
secai.dataset.examples)."""

from __future__ import annotations

from pathlib import Path

import orjson

from secai import config
from secai.cli import Command, entry
from secai.errors import UsageError
from secai.dataset.examples import STAGES, Tally, stage_examples
from secai.files import AtomicOutput


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
                            "of that scanner (bandit, checkov or semgrep, all its rules for the file) must no longer "
                            "report the finding nor anything the unmodified file does not have, and a Kubernetes "
                            "manifest must gain nothing the platform refuses or ignores; "
                            "fixes that cannot be checked are dropped too. Prints `verified N/M fixes` "
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
        a = self.args
        tally = Tally()
        yield from stage_examples(list(self.progress(records, unit="analysis")), a.stage, tally,
                                  self._verify if a.verify_fixes else None)
        skipped = tally.skipped
        why = ", ".join(f"{n} {reason}" for reason, n in sorted(skipped.items(), key=lambda kv: (-kv[1], kv[0])))
        note = f"; {tally.fixes_dropped} fixes left out (code does not parse for its language)" if tally.fixes_dropped else ""
        self.log(f"{tally.analyses} analyses -> {tally.examples} {a.stage} examples; {sum(skipped.values())} skipped"
                 + (f" ({why})" if why else "") + note)

    def _verify(self, candidates) -> dict:
        """Verdicts keyed by example id; logs `verified N/M fixes (...)` and writes --verify-report."""
        from secai.analysis.verify import Scanners, describe, report, summary, verify

        a = self.args
        settings = config.section("verify")
        configs = a.semgrep_config if a.semgrep_config is not None else settings["semgrep_config"]
        scanners = Scanners.find(a.scanners_dir or settings["scanners_dir"],
                                 [configs] if isinstance(configs, str) else configs, settings["timeout"])
        verdicts = verify(candidates, Path(a.source_root), scanners)
        counts = summary(candidates, verdicts)
        self.log(describe(counts))
        if a.verbose:
            for c in candidates:
                v = verdicts[c.key]
                self.log(f"  {c.finding['tool']} {c.finding['rule_id']} {c.context['path']}: {v.reason}"
                         + (f" ({v.detail})" if v.detail else ""))
        if a.verify_report:
            with AtomicOutput(a.verify_report) as out:
                out.write(orjson.dumps(report(candidates, verdicts, counts, scanners),
                                       option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n")
        return verdicts


def main():
    entry(Narrate)


if __name__ == "__main__":
    main()
