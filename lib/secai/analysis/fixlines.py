"""The lines a fix rule edits, and the layout of code in them: where the block a line opens ends, and
how far it is indented (secai.analysis.fixrules)."""

from __future__ import annotations

import re
from functools import lru_cache


class Line:
    """A line being edited: its index in the context (None when inserted), the index it is attached
    to when inserted, whether the edits see it, and whether it changed."""
    __slots__ = ("orig", "text", "scope", "changed", "anchor")

    def __init__(self, orig, text, scope, changed=False, anchor=None):
        self.orig, self.text, self.scope, self.changed, self.anchor = orig, text, scope, changed, anchor

    @property
    def home(self) -> int:
        return self.orig if self.orig is not None else self.anchor


BRACES = frozenset({"hcl", "java", "javascript", "typescript", "go", "kotlin", "json"})
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
# languages with C-style comments (// to the end of the line, /* ... */), the only ones blank_comments reads
C_COMMENTS = frozenset({"java", "javascript", "typescript", "go", "kotlin"})
_TOKENS = re.compile(r'"(?:[^"\\\n]|\\.)*"|\'(?:[^\'\\\n]|\\.)*\'|`(?:[^`\\]|\\.)*`|//[^\n]*|/\*.*?\*/', re.S)
_LINE_COMMENT = re.compile(r"//.*|/\*.*?\*/")


def blank_comments(text: str, language: str) -> str:
    """`text` with its comments blanked to spaces (line breaks kept, so line numbers stay): for the
    C_COMMENTS languages, // and /* */ outside string and template literals; other text unchanged.
    What a fix rule matches is code, never commented-out code."""
    if language not in C_COMMENTS:
        return text
    return _TOKENS.sub(lambda m: m.group(0) if m.group(0)[0] in "\"'`" else re.sub(r"[^\n]", " ", m.group(0)), text)


def comment_lines(texts: list[str], language: str) -> set[int]:
    """Indexes of the lines that hold a comment and nothing else (see blank_comments)."""
    if language not in C_COMMENTS:
        return set()
    shown = blank_comments("\n".join(texts), language).split("\n")
    return {i for i, (text, code) in enumerate(zip(texts, shown)) if text.strip() and not code.strip()}


def leading_space(text: str) -> str:
    """The whitespace a line begins with."""
    return text[:len(text) - len(text.lstrip())]


_LIST_MARKS = re.compile(r"(?:-[ \t]+)*")


def key_indent(text: str, language: str) -> str:
    """Leading whitespace up to the line's first token; YAML: past list markers ('- ')."""
    lead = leading_space(text)
    if language == "yaml":
        marks = _LIST_MARKS.match(text, len(lead)).group(0)
        return lead + " " * len(marks)
    return lead


def neutral(text: str, language: str) -> bool:
    s = text.strip()
    return not s or (s.startswith("#") and language in ("yaml", "python", "dockerfile"))


def block_end(lines: list, i: int, language: str) -> int:
    """Index of the last line of the block that lines[i] opens (i for a one-line statement)."""
    if language in BRACES:
        depth, opened = 0, False
        for j in range(i, len(lines)):
            text = _STRINGS.sub('""', lines[j].text.split("#")[0] if language == "hcl" else lines[j].text)
            if language in C_COMMENTS:
                text = _LINE_COMMENT.sub("", text)
            for ch in text:
                if ch in "{[(":
                    depth, opened = depth + 1, True
                elif ch in "}])":
                    depth -= 1
            if not opened or depth <= 0:
                return j
        return len(lines) - 1
    if language == "dockerfile":
        j = i
        while j + 1 < len(lines) and lines[j].text.rstrip().endswith("\\"):
            j += 1
        return j
    base, end = len(leading_space(lines[i].text)), i
    key = lines[i].text.rstrip().endswith(":")
    for j in range(i + 1, len(lines)):
        text = lines[j].text
        if neutral(text, language):
            continue
        depth = len(leading_space(text))
        if depth > base or (language == "yaml" and key and depth == base and text.lstrip().startswith("- ")):
            end = j
        else:
            break
    return end


def inner_indent(lines: list, i: int, end: int, language: str, unit: str) -> str:
    for j in range(i + 1, end + 1):
        if not neutral(lines[j].text, language) and not (language in BRACES and lines[j].text.strip() in "}])"):
            return key_indent(lines[j].text, language)
    return key_indent(lines[i].text, language) + unit


def indent_step(texts: list[str], language: str) -> int:
    """The indentation step of the code: the least difference between its indentation levels."""
    return _indent_step(tuple(texts), language)


@lru_cache(maxsize=4096)  # the same lines come up again: each fix rule tried on a context, the same code elsewhere
def _indent_step(texts: tuple[str, ...], language: str) -> int:
    levels = sorted({len(key_indent(t, language)) for t in texts if t.strip() and "\t" not in leading_space(t)})
    steps = [b - a for a, b in zip(levels, levels[1:]) if 0 < b - a <= 8]
    return min(steps) if steps else (4 if language == "python" else 2)
