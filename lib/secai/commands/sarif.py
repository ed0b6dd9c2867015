"""secai-sarif: analysis/1 in, one SARIF 2.1.0 log out, for GitHub code scanning (the log itself:
secai.publishing.sarif)."""

from __future__ import annotations

import argparse

from secai.cli import Command, entry
from secai.errors import EXIT_OK
from secai.publishing import sarif as log_model
from secai.publishing.repopaths import RepoPaths
from secai.publishing.sarif import DEFAULT_CATEGORY, MAX_RESULTS, MAX_RULES


def _category(value: str) -> str:
    value = value.strip().rstrip("/")
    if not value:
        raise argparse.ArgumentTypeError("a category must not be empty")
    return value


class Sarif(Command):
    name = "secai-sarif"
    description = ("Write analyses as one SARIF 2.1.0 log for GitHub code scanning: a run per scanner "
                   "(its tool, with secai as the extension that explained its findings), a rule per "
                   "scanner rule whose help is the remediation (with impact, prevention and the suggested "
                   "fix in Markdown), a result per finding with its location relative to the repository "
                   "root, GitHub's primaryLocationLineHash and security-severity, and a SARIF fix where "
                   "the analysis has fixed code that can be placed on the finding's lines. The log is "
                   "validated against the official SARIF 2.1.0 schema before it is written; output is "
                   "deterministic.")
    examples = """\
  secai-sarif build/analyses.jsonl -o build/analyses.sarif
  secai-parse reports/ | secai-analyze --source-root . | secai-sarif > secai.sarif
  secai-sarif analyses.jsonl --source-root services/api --category secai/api -o api.sarif
  secai-sarif analyses.jsonl --scanner bandit --scanner semgrep --repo-root "$GITHUB_WORKSPACE"

Upload with github/codeql-action/upload-sarif (sarif_file: build/analyses.sarif). The run's
automationDetails.id (--category, default secai/) is the code-scanning category; the action's own
`category` input does not override an id already in the file. Paths are the findings' paths
under --source-root (default: .), written relative to --repo-root (default: the git root of the
source root), the root GitHub reads them from. Name every scanner that ran with --scanner: one
that found nothing then still has its (empty) run, which closes its fixed alerts. Findings without a file location
(DAST endpoints, images) are left out and counted on stderr: GitHub rejects a log in which any
result has no location. --keep-unlocated keeps them for other SARIF consumers."""
    input_kind = "analysis/1"

    def add_arguments(self, p):
        p.add_argument("--source-root", metavar="DIR", default=".",
                       help="directory the findings' paths are relative to (where the scanners ran; default: .)")
        p.add_argument("--repo-root", metavar="DIR",
                       help="root of the repository the log is uploaded for: paths are written relative to it and "
                            "line hashes read from its files (default: the git root of --source-root, else "
                            "--source-root)")
        p.add_argument("--scanner", metavar="NAME", action="append", default=[],
                       help="a scanner that ran (repeatable): it gets a run even when it found nothing, so that "
                            "GitHub closes its fixed alerts")
        p.add_argument("--category", metavar="ID", default=DEFAULT_CATEGORY, type=_category,
                       help="code-scanning category: the run's automationDetails.id is ID/ (default: secai)")
        p.add_argument("--keep-unlocated", action="store_true",
                       help="keep findings without a file location as results without locations "
                            "(valid SARIF; GitHub code scanning rejects such a log)")

    def run(self) -> int:
        a = self.args
        paths = RepoPaths(a.source_root, a.repo_root)
        log, counts = log_model.build_log(list(self.read_inputs()), a.category, a.keep_unlocated, paths, a.scanner)
        problems = log_model.sarif_errors(log)
        if problems:  # a bug here, never bad input: the input was validated record by record
            raise RuntimeError(f"the SARIF log is not valid SARIF 2.1.0: {'; '.join(problems)}")
        self.write_lines([log_model.dumps_log(log)])
        c = counts
        self.log(f"{c['results']} results under {c['rules']} rules in {c['runs']} runs from {c['analyses']} analyses "
                 f"({c['fixes']} with fixes, {c['hashed']} with line hashes, "
                 f"{c['unlocated']} without a file location left out"
                 + (f", {c['duplicates']} duplicate ids ignored" if c["duplicates"] else "") + ")")
        if c["max_results"] > MAX_RESULTS or c["max_rules"] > MAX_RULES:
            self.log(f"warning: GitHub code scanning accepts at most {MAX_RESULTS} results and {MAX_RULES} rules "
                     "per run; split the input (one --category per part)")
        return EXIT_OK


def main():
    entry(Sarif)


if __name__ == "__main__":
    main()
