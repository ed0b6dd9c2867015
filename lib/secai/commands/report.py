"""secai-report: a build folder as one page to open, a Markdown summary or terminal text (the facts
and their rendering: secai.publishing.report)."""

from __future__ import annotations

from secai import config
from secai.cli import Command, entry, escape
from secai.errors import EXIT_OK
from secai.publishing.report import facts as build_facts
from secai.publishing.report import page, plain

FORMATS = ("html", "md", "text")


class Report(Command):
    name = "secai-report"
    description = ("Show what a build found and made: findings by severity, tool and category; each finding's "
                   "analysis with its code and the fix as a coloured diff, and whether the scanner confirmed the "
                   "fix; the dataset's counts and splits; the training and validation loss curves of each stage "
                   "with the held-out evaluation (base vs adapter, forgetting); the quality figures. HTML (the "
                   "default) is one static, self-contained page that loads nothing, with filters by severity, "
                   "tool and text and a link to each finding (report.html#FINDING-ID); md is for a README or a "
                   "pull-request comment, text for the terminal. Parts the build does not have (no training "
                   "with SKIP_FINETUNE=1, no verification without the scanners) are shown as absent.")
    examples = """\
  secai-report --build build -o build/report.html      # what `make report` does
  secai-report --build build --format text | less -R
  secai-report --build build --format md > report.md   # a pull-request comment
  xdg-open build/report.html#3f2a...                    # one finding, opened and highlighted

It reads build/analyses.jsonl, training/codefix-verify.json, datasets/*/manifest.json,
finetune/*.json with each model's training_log.jsonl from the model store (SECAI_MODELS_DIR),
quality.json and summary.json."""
    reads = False

    def add_arguments(self, p):
        p.add_argument("--build", metavar="DIR", default=None,
                       help="the build folder to report on (default: paths.build of the config, build)")
        p.add_argument("--format", choices=FORMATS, default="html",
                       help="html: one self-contained page (default); md: Markdown; text: for a terminal")

    def run(self) -> int:
        a = self.args
        facts = build_facts.gather(a.build or config.get("paths", "build"))
        if a.format == "html":
            out = page.html(facts)
        elif a.format == "md":
            out = plain.markdown(facts)
        else:  # a terminal: no escape sequence, carriage return or bidi override from the build's text
            out = "\n".join(escape(line) for line in plain.text(facts).split("\n"))
        self.write_lines([out.encode("utf-8")])
        c = facts["counts"]
        self.log(f"{c['findings'] if c else 0} findings, {len(facts['models'] or [])} models"
                 + ("" if a.output in (None, "-") else f" -> {a.output}"))
        return EXIT_OK


def main():
    entry(Report)


if __name__ == "__main__":
    main()
