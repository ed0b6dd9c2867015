"""Scanner report formats: the one table of every format secai-parse reads.

Each parser module defines `FORMATS`, a list of `Format`. A format is detected from content, never
from the file name: `detect` gets the parsed document (JSON value, list of JSON Lines records, or
the XML root element) and says whether it is this format; `parse` yields partial finding dicts
(see finding.finalize). Order matters only where shapes overlap: the first format that claims a
document reads it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class Format:
    name: str                      # e.g. "trivy-json"; recorded in source.format
    syntax: str                    # "json", "jsonl" or "xml"
    tool: str                      # the scanner, for --list-formats
    identifies: str                # what in the content identifies it, for --list-formats
    detect: Callable[[object], bool]
    parse: Callable[[object], Iterator[dict]]
    clean: bool = False   # parse never yields empty values, so finalize need not prune them
    lazy: bool = False    # parse reads each array once, in order, unchanged: a large report's may be lazy (parsing.lazy)


def _table() -> list[Format]:
    from secai.parsing.formats import (bandit, checkov, dependency_check, dockle, gitleaks, grype, hadolint, kics, npm_audit,
                   osv, sarif, semgrep, snyk, tfsec, trivy, trufflehog, zap)

    return [*sarif.FORMATS, *trivy.FORMATS, *checkov.FORMATS, *semgrep.FORMATS, *osv.FORMATS,
            *gitleaks.FORMATS, *zap.FORMATS, *grype.FORMATS, *bandit.FORMATS, *dependency_check.FORMATS,
            *npm_audit.FORMATS, *trufflehog.FORMATS, *hadolint.FORMATS, *kics.FORMATS, *tfsec.FORMATS,
            *snyk.FORMATS, *dockle.FORMATS]


FORMATS: list[Format] = _table()
BY_NAME = {f.name: f for f in FORMATS}


def detect(doc, syntax: str) -> tuple[Format | None, object]:
    """(the first format of `syntax` that claims `doc`, the document as it reads it), or (None, doc).
    A JSON Lines report of one record loads as a JSON object; it is offered to the JSON Lines formats."""
    for fmt in FORMATS:
        if fmt.syntax == syntax and fmt.detect(doc):
            return fmt, doc
    if syntax == "json" and isinstance(doc, dict):
        for fmt in FORMATS:
            if fmt.syntax == "jsonl" and fmt.detect([doc]):
                return fmt, [doc]
    return None, doc
