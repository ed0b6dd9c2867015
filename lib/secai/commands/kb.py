"""secai-kb: the rule knowledge harvested from the installed scanners and the CWE catalogue
(the harvester: secai.analysis.harvest; the reader: secai.analysis.rules)."""

from __future__ import annotations

from pathlib import Path

from secai.analysis.harvest import HARVESTED, SOURCES, TIMEOUT, harvest, scanners_python
from secai.cli import Command, entry
from secai.errors import EXIT_OK


class Kb(Command):
    name = "secai-kb"
    description = ("Harvest rule knowledge from the scanners themselves: every checkov check of every framework "
                   "(inspected key, expected or forbidden values, resources, graph conditions, guideline), every "
                   "bandit test (its documentation, CWE, severity) and the MITRE CWE catalogue (description, "
                   "consequences, mitigations) from the cwe2 package, into versioned JSON files with each "
                   "source's name, version and licence. The scanners are never imported here: small probes run "
                   "with the scanners' own interpreter and print JSON, which is validated "
                   "(schemas/rule.schema.json) before any file is written.")
    examples = """\
  secai-kb harvest                                  # .scanners/ (make scanners) -> lib/secai/analysis/kb/harvested/
  secai-kb harvest --scanners-dir ~/scanners/bin -o /tmp/kb
  secai-kb harvest --only bandit --only cwe

`make kb` runs the first (after `make scanners`). The files are committed, so a clone without
scanners has them; secai-analyze reads them (secai.analysis.rules)."""
    reads = False
    writes = None
    subcommands = {"harvest": ("read the installed scanners' rules and the CWE catalogue into data files",
                               "Read every checkov check, every bandit test and the CWE catalogue (cwe2) with "
                               "the scanners' interpreter and write one JSON file per source, atomically.")}

    def add_subcommand_arguments(self, action, p):
        p.add_argument("--scanners-dir", metavar="DIR", type=Path,
                       help="the folder holding checkov, bandit and their python (or its bin/); default: "
                            ".scanners/bin (make scanners), else checkov's folder on PATH")
        p.add_argument("-o", "--output", metavar="DIR", type=Path, default=HARVESTED,
                       help="where the files go (default: lib/secai/analysis/kb/harvested/)")
        p.add_argument("--only", action="append", choices=tuple(SOURCES), metavar="SOURCE",
                       help=f"harvest only this source (repeatable): {', '.join(SOURCES)}")
        p.add_argument("--timeout", type=int, default=TIMEOUT, metavar="SECONDS",
                       help=f"the most one probe may run (default: {TIMEOUT})")

    def run(self) -> int:
        a = self.args
        names = tuple(dict.fromkeys(a.only)) if a.only else tuple(SOURCES)
        counts = harvest(scanners_python(a.scanners_dir), a.output, names, a.timeout)
        self.log("harvested " + ", ".join(f"{n} {c} records" for n, c in counts.items()) + f" into {a.output}")
        return EXIT_OK


def main():
    entry(Kb)


if __name__ == "__main__":
    main()
