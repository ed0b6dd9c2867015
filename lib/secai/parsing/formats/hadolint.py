"""Hadolint JSON reports (`hadolint -f json Dockerfile...`): Dockerfile lint results.

A top-level array of {line, code, message, column, file, level}; identified as an array whose every
entry has code, line, level and message, with codes of Hadolint's own rules (DL3008) or of the
ShellCheck checks it runs on RUN instructions (SC2086).

Mapping: tool hadolint, category iac, one finding per entry; rule_id code; title the message
(Hadolint has no rule titles, and its messages are the rule's one-line text); location: file
(backslashes made slashes), line, column; references: the rule's page, the Hadolint wiki for DL
rules (https://github.com/hadolint/hadolint/wiki/DL3008) and the ShellCheck wiki for SC checks
(https://www.shellcheck.net/wiki/SC2086).

Severity, the level kept as tool_severity: error→high, warning→medium, info→low, style→info; a
missing or other level→info.

Ids are the location fingerprint (tool, code, file, line, and the column when above 1), the key
DefectDojo deduplicates Hadolint results on; a rule reported twice at one place is one finding.
"""

from __future__ import annotations

import re

from secai.parsing.finding import ParseError, as_dict, as_list, norm_path, positive_int, text
from secai.parsing.formats import Format

LEVELS = {"error": "high", "warning": "medium", "info": "low", "style": "info"}
WIKI = {"DL": "https://github.com/hadolint/hadolint/wiki/", "SC": "https://www.shellcheck.net/wiki/"}
_CODE = re.compile(r"(DL|SC)\d+\Z")
_KEYS = {"code", "line", "level", "message"}


def detect(doc) -> bool:
    return (isinstance(doc, list) and bool(doc)
            and all(isinstance(e, dict) and _KEYS <= e.keys() and _CODE.match(text(e["code"])) for e in doc))


def parse(doc: list):
    for i, raw in enumerate(as_list(doc, "$")):
        entry = as_dict(raw, f"$[{i}]")
        code, level, message = text(entry.get("code")), text(entry.get("level")), text(entry.get("message"))
        if not code:
            raise ParseError("missing code", f"$[{i}]")
        rule = _CODE.match(code)
        path = norm_path(entry.get("file"))
        yield {
            "tool": "hadolint", "rule_id": code, "title": message or code,
            "severity": LEVELS.get(level.lower(), "info"), "tool_severity": level, "category": "iac",
            "references": [WIKI[rule.group(1)] + code] if rule else [],
            "location": {"path": path, "start_line": positive_int(entry.get("line")),
                         "start_column": positive_int(entry.get("column"))} if path else None,
        }


FORMATS = [Format("hadolint-json", "json", "Hadolint",
                  "an array of entries with code (DL…, SC…), line, level and message", detect, parse)]
