"""Where a fix lands in its file: one decision, made here for everyone who applies a fix.

Verification (secai.analysis.verify) applies the fix to a copy of the file and re-runs the scanner;
SARIF (secai.publishing.sarif) offers the same replacement to code-scanning tools. Both ask `place`,
so SARIF never offers a replacement at lines verification did not check.

The rule, given the lines of a file (all of it, or the code context's lines) and the analysis's
code context (the lines the fix was written against, and the finding's own lines):
- A fix with `original` replaces those lines (compared without the whitespace around each line;
  `[REDACTED]` in them stands for whatever secret the file holds there) where they lie wholly
  inside the code context; when they occur more than once there, the occurrence nearest the
  finding's lines (one that covers them first, then the earliest of equally near ones).
- A fix without `original` (as a model may give it) replaces the enclosing unit (function,
  resource, ...) of the context, when its first line is the unit's first line.
- Code given dedented takes the indentation of the lines it replaces.
Anything else is not placed (NotPlaced): no guess at lines that were never read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from secai.secrets import REDACTED

NOT_PLACED = "original code not found in the file"


class NotPlaced(Exception):
    """The fix cannot be placed; the message says why."""


@dataclass(frozen=True)
class Placement:
    start: int              # first line of the file the fix replaces (1-based)
    end: int                # last line it replaces (inclusive)
    code: tuple[str, ...]   # the lines that replace them, indented as they will be in the file

    @property
    def fixed_end(self) -> int:
        """The last line of the fix in the fixed file."""
        return self.start + len(self.code) - 1

    def apply(self, lines: list[str], first_line: int = 1) -> list[str]:
        """`lines` (numbered from first_line) with the fix applied."""
        a, b = self.start - first_line, self.end - first_line + 1
        return lines[:a] + list(self.code) + lines[b:]


def _line_matcher(line: str):
    """Whether a file's line is `line`, whitespace around it aside ([REDACTED]: any secret)."""
    line = line.strip()
    if REDACTED not in line:
        return lambda text: text.strip() == line
    pattern = re.compile(".+?".join(re.escape(part) for part in line.split(REDACTED)))
    return lambda text: pattern.fullmatch(text.strip()) is not None


def _reindent(code: list[str], original: list[str]) -> list[str]:
    """Code given dedented (as models often give it) takes the original's indentation."""
    def lead(lines: list[str]) -> str:
        return next((ln[:len(ln) - len(ln.lstrip())] for ln in lines if ln.strip()), "")

    want, have = lead(original), lead(code)
    if want and not have:
        return [want + ln if ln.strip() else ln for ln in code]
    return code


def _distance(start: int, end: int, finding: tuple[int, int]) -> int:
    """Lines between the block start..end and the finding's lines (0 when they overlap)."""
    return max(finding[0] - end, start - finding[1], 0)


def place(lines: list[str], context: dict, fix: dict, first_line: int = 1) -> Placement:
    """Where `fix` (analysis/1 analysis.fix) lands among `lines`, the file's lines numbered from
    `first_line` (1 for a whole file; context["start_line"] for the code context's own lines).
    NotPlaced when the rule above finds no place."""
    code = fix["code"].replace("\r\n", "\n").rstrip("\n").split("\n")
    original = (fix.get("original") or "").replace("\r\n", "\n").rstrip("\n")
    last_line = first_line + len(lines) - 1
    lo, hi = max(context["start_line"], first_line), min(context["end_line"], last_line)
    if original:
        want = original.split("\n")
        match = [_line_matcher(ln) for ln in want]
        finding = tuple(context.get("finding_lines") or (context["start_line"], context["start_line"]))
        starts = [s for s in range(lo, hi - len(want) + 2)
                  if all(m(lines[s - first_line + i]) for i, m in enumerate(match))]
        if not starts:
            raise NotPlaced(NOT_PLACED)
        start = min(starts, key=lambda s: (_distance(s, s + len(want) - 1, finding), s))
        end = start + len(want) - 1
        want = lines[start - first_line:end - first_line + 1]  # as the file has them: their indentation
    else:
        unit = context.get("enclosing")
        head = next((ln.strip() for ln in code if ln.strip()), "")
        if (not unit or unit["start_line"] < first_line or unit["end_line"] > last_line
                or lines[unit["start_line"] - first_line].strip() != head):
            raise NotPlaced(NOT_PLACED + " (the fix has no original)")
        start, end = unit["start_line"], unit["end_line"]
        want = lines[start - first_line:end - first_line + 1]
    return Placement(start, end, tuple(_reindent(code, want)))
