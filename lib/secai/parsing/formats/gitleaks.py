"""Gitleaks JSON reports (`gitleaks detect --report-format json`), Gitleaks 8 and Gitleaks 7.

- v8: an array of {RuleID, Description, File, SymlinkFile, StartLine, EndLine, StartColumn,
  EndColumn, Match, Secret, Commit, Entropy, Author, Email, Date, Message, Tags[], Fingerprint,
  Link}.
- v7: an array of {rule, file, lineNumber, line, offender, offenderEntropy, commit, commitMessage,
  repo, repoURL, leakURL, author, email, date, tags ("key, AWS")}; it is read as v8 through the
  field table below.

Mapping: tool gitleaks, category secret; rule_id: RuleID, or v7's rule as written ("AWS Access
Key": Gitleaks 7 has no other id, and its SARIF uses this one); title: Description (v7: the rule);
location: File (SymlinkFile when set, as Gitleaks' SARIF does), lines and columns, never a
snippet; references: Link / leakURL; tags. Severity: Gitleaks rates nothing and every result is a
credential in the repository, so all are `high`, with no tool_severity. message: "Found in commit
<commit> (<date>): <first line of the commit message>" for git history scans.

Secrets: the value (Secret, else Match; v7 offender) is kept only as secret.sha256, of the value
stripped of surrounding blanks, as the SARIF parser hashes Gitleaks' snippet. Match and v7 `line`
quote it and are never output; messages are cleared of every secret, Match and line of the
report (a commit message may quote another finding's secret). A report written with --redact has
"REDACTED" for the value: that hashes nothing, so `secret` (commit, entropy) is then left out.
Entropy is kept when Gitleaks computed one (above 0). Author and email are not kept.

Ids are the location fingerprint (tool, rule, path, start line, column), the same as the findings
of Gitleaks' SARIF for the same scan, whose results have ruleId, artifact uri, startLine and
startColumn. A secret that stays in one place through several commits of a history scan is one
finding (the first commit kept, `occurrences` counts the rest); DefectDojo merges on similar keys
(v7 offender+file+line, v8 title+secret+line, ignoring the column).
"""

from __future__ import annotations

from secai.parsing.finding import ParseError, as_dict, as_list, norm_path, positive_int, text, unique
from secai.secrets import redact, secret_digest
from secai.parsing.formats import Format

REDACTED_BY_GITLEAKS = "REDACTED"
V7_FIELDS = {"rule": "RuleID", "file": "File", "lineNumber": "StartLine", "offender": "Secret", "line": "Match",
             "offenderEntropy": "Entropy", "commit": "Commit", "commitMessage": "Message", "date": "Date",
             "tags": "Tags", "leakURL": "Link"}


def detect(doc) -> bool:
    if not isinstance(doc, list) or not doc or not isinstance(doc[0], dict):
        return False
    return {"RuleID", "File"} <= doc[0].keys() or {"rule", "offender"} <= doc[0].keys()


def _quoted(leak: dict) -> list[str]:
    """What a finding quotes of its secret: Secret and Match (v7: offender and line)."""
    return [v for v in (leak.get("Secret"), leak.get("Match")) if isinstance(v, str)]


def _finding(leak: dict, where: str, clean) -> dict:
    rule = text(leak.get("RuleID"))
    if not rule:
        raise ParseError("finding has no rule id", where)
    value = next((text(v) for v in _quoted(leak) if text(v)), "")
    commit = text(leak.get("Commit"))
    date, subject = text(leak.get("Date")), text(leak.get("Message")).split("\n", 1)[0].strip()
    message = f"Found in commit {commit}" + (f" ({date})" if date else "") + (f": {subject}" if subject else "")
    entropy = leak.get("Entropy")
    tags = leak.get("Tags")
    path = norm_path(leak.get("SymlinkFile")) or norm_path(leak.get("File"))
    start = positive_int(leak.get("StartLine"))
    return {
        "tool": "gitleaks", "rule_id": rule, "title": clean(text(leak.get("Description")) or rule),
        "message": clean(message) if commit else "", "severity": "high", "category": "secret",
        "location": {
            "path": path, "start_line": start, "end_line": positive_int(leak.get("EndLine")) or start,
            "start_column": positive_int(leak.get("StartColumn")), "end_column": positive_int(leak.get("EndColumn")),
        } if path else None,
        "secret": {
            "sha256": secret_digest(value), "commit": commit,
            "entropy": entropy if isinstance(entropy, (int, float)) and not isinstance(entropy, bool) and entropy > 0 else None,
        } if value and value != REDACTED_BY_GITLEAKS else None,
        "references": unique([leak.get("Link")]),
        "tags": unique(tags.split(",") if isinstance(tags, str) else as_list(tags, f"{where}.Tags")),
    }


def parse(doc: list):
    leaks = [as_dict(leak, f"$[{i}]") for i, leak in enumerate(as_list(doc, "$"))]
    leaks = [leak if "RuleID" in leak else  # Gitleaks 7
             {new: leak.get(old) for old, new in V7_FIELDS.items()} | {"Description": leak.get("rule")} for leak in leaks]
    # a commit message may quote any secret of its commit, not only the finding's own
    secrets = {s for leak in leaks for v in _quoted(leak) for s in (v, v.strip()) if len(s) >= 4}
    cleaned: dict[str, str] = {}

    def clean(value: str) -> str:
        if value not in cleaned:
            cleaned[value] = redact(value, [s for s in secrets if s in value])
        return cleaned[value]

    for i, leak in enumerate(leaks):
        yield _finding(leak, f"$[{i}]", clean)


FORMATS = [Format("gitleaks-json", "json", "Gitleaks",
                  "an array of findings with `RuleID` and `File` (v8) or `rule` and `offender` (v7)",
                  detect, parse)]
