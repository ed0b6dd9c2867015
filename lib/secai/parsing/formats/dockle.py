"""Dockle JSON reports (`dockle -f json IMAGE`): container image configuration checks.

{"image": "<name>" (Dockle 0.4+), "summary": {fatal, warn, info, skip, pass}, "details": [{code,
title, level, alerts[]}]}; identified by a summary with fatal, warn and pass counts beside details.

Mapping: tool dockle, category container; one finding per check code in details: rule_id code
(CIS-DI-0001, DKL-DI-0006, DKL-LI-0003), title the check's title (else the code), message the alerts
one per line, references the check's entry in Dockle's CHECKPOINT.md; location: path the image's
repository as Trivy and Grype write it for image findings ("nginx:1.25" → "library/nginx"), so that a
check failing again in the next tag of the image is the same finding, and resource the image as
given; none when the report does not name the image. Dockle lists every check once; where an
old version lists one code twice (CIS-DI-0010 for ENV keys and for files), the entries are one finding
with the first title, the highest severity and every alert, as the fingerprint (tool, code, image)
would merge them anyway.

Severity, the level kept as tool_severity: FATAL→high, WARN→medium, INFO→low, any other level→info.
Checks that passed or were not applied are no findings: PASS, SKIP (not applicable to the image) and
IGNORE (accepted with --ignore or .dockleignore) are skipped.

Secrets: alerts name suspicious ENV keys ("Suspicious ENV key found : MYSQL_PASSWD") and quote image
history commands ("... on /bin/sh -c #(nop) ENV MYSQL_PASSWD=s3cret"); every value written after
`KEY=` (4 characters or more; quotes around it excluded) in any alert of the report, skipped checks'
included, is replaced by [REDACTED] wherever it appears in the output.
"""

from __future__ import annotations

import re

from secai.parsing.finding import ParseError, as_dict, as_list, max_severity, text
from secai.secrets import redact
from secai.parsing.formats import Format
from secai.parsing.formats.trivy import image_repository

LEVELS = {"FATAL": "high", "WARN": "medium", "INFO": "low"}
SKIPPED = {"PASS", "SKIP", "IGNORE"}
CHECKPOINT = "https://github.com/goodwithtech/dockle/blob/master/CHECKPOINT.md#"
_ASSIGNED = re.compile(r"""[A-Za-z_][\w.-]*=("[^"]*"|'[^']*'|[^\s"']+)""")


def detect(doc) -> bool:
    if not isinstance(doc, dict) or not isinstance(doc.get("summary"), dict) or "details" not in doc:
        return False
    return {"fatal", "warn", "pass"} <= doc["summary"].keys()


def parse(doc: dict):
    doc = as_dict(doc, "$")
    image = text(doc.get("image"))
    checks: dict[str, dict] = {}
    quoted: list[str] = []  # every alert, skipped checks' too: a value quoted anywhere is redacted everywhere
    for i, raw in enumerate(as_list(doc.get("details"), "$.details")):
        where = f"$.details[{i}]"
        entry = as_dict(raw, where)
        code, level = text(entry.get("code")), text(entry.get("level"))
        if not code:
            raise ParseError("missing code", where)
        alerts = [text(a) for a in as_list(entry.get("alerts"), f"{where}.alerts")]
        quoted += alerts
        if level.upper() in SKIPPED:
            continue
        severity = LEVELS.get(level.upper(), "info")
        if code in checks:
            kept = checks[code]
            kept["alerts"] += alerts
            if max_severity(kept["severity"], severity) != kept["severity"]:
                kept["severity"], kept["tool_severity"] = severity, level
            continue
        checks[code] = {"tool": "dockle", "rule_id": code, "title": text(entry.get("title")) or code,
                        "severity": severity, "tool_severity": level, "category": "container",
                        "alerts": alerts, "references": [CHECKPOINT + code],
                        "location": {"path": image_repository(image) or image, "resource": image} if image else None}
    values = [m.strip("\"'") for a in quoted for m in _ASSIGNED.findall(a)]
    for finding in checks.values():
        finding["message"] = redact("\n".join(a for a in finding.pop("alerts") if a), values)
        yield finding


FORMATS = [Format("dockle-json", "json", "Dockle",
                  "an object with `details` and a `summary` of fatal, warn and pass counts", detect, parse)]
