"""secai-parse: scanner reports in, normalized and deduplicated finding/1 records out (reading the
reports: secai.parsing.inputs and secai.parsing.reports; the finding builder: secai.parsing.finding)."""

from __future__ import annotations

import gc
import sys

from secai import config
from secai.cli import Command, entry
from secai.errors import EXIT_OK
from secai.parsing import formats as parsers
from secai.parsing.reports import base_source, findings, format_listing


class Parse(Command):
    name = "secai-parse"
    description = ("Read scanner reports (files, directories, GitHub Actions artifact zips, or stdin), "
                   "detect each format from its content, and write one normalized, deduplicated "
                   "finding/1 record per line.")
    examples = """\
  secai-parse trivy.json checkov.sarif > findings.jsonl
  secai-parse artifacts/ security-reports.zip -o build/findings.jsonl --rejects build/rejects.jsonl
  trivy image -f json alpine:3.10 | secai-parse | jq -r .title
  secai-parse --list-formats

Files found by walking a directory or a zip that are not a known report are skipped with a note;
a file named explicitly must be one. With --rejects, unreadable reports are listed there and the
rest are still parsed (exit 0); without it, the first one stops the run (exit 1)."""
    output_kind = "finding/1"
    config_section = "parse"

    def add_arguments(self, p):
        p.add_argument("--list-formats", action="store_true", help="list the formats read and what identifies each (with -v: how each is mapped)")
        p.add_argument("--format", choices=sorted(parsers.BY_NAME), help="read every input as this format (no detection)")
        p.add_argument("--run-id", help="CI run id to record in source.run_id")
        p.add_argument("--commit", help="scanned commit to record in source.commit")
        p.add_argument("--branch", help="scanned branch to record in source.branch")
        p.add_argument("--max-file-mb", type=float, default=None,
                       help="refuse a report or zip member larger than this (default: parse.max_file_mb)")

    def run(self) -> int:
        a = self.args
        if a.list_formats:
            sys.stdout.write(format_listing(a.verbose))
            return EXIT_OK
        # Reports become millions of small objects and hold no reference cycles: the cyclic
        # collector only rescans them (it doubles orjson's load time on a 40 MB SARIF). It is off
        # for the parse only, so a process that runs the command in-process (tests) keeps its own.
        collecting = gc.isenabled()
        gc.disable()
        try:
            lines, tally = findings(
                a.inputs, forced=parsers.BY_NAME.get(a.format or ""), base=base_source(a.run_id, a.commit, a.branch),
                max_mb=self.setting("max_file_mb"),
                zip_ratio=config.get("parse", "max_zip_ratio"), max_text=config.get("parse", "max_text_chars"),
                max_instances=config.get("parse", "max_instances"), reject=self.reject, log=self.log, verbose=a.verbose,
                progress=lambda found: self.progress(found, unit="report"))
        finally:
            if collecting:
                gc.enable()
        self.log(f"{len(lines)} findings from {tally.reports} reports"
                 f" ({tally.findings - len(lines)} duplicates merged, {len(self.rejects)} rejected)")
        self.write_lines(lines)
        return EXIT_OK


def main():
    entry(Parse)


if __name__ == "__main__":
    main()
