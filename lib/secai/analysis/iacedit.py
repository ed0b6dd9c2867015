"""Structural edits of Terraform (HCL) text, line by line, keeping everything else as written: one
attribute of a block set, added (with the blocks on its path) or reduced (list members removed);
secai.analysis.iacfix decides what to change. The same Change, said of a key path of a YAML
mapping, is made by secai.analysis.yamlset.

    new = hcl_change(lines, open_line, ("versioning", "enabled"), Change("set", True))

`lines` are the lines of the code context; the edited block must lie wholly in them. The result
is the block's new lines. `Unfixable(reason)` when the edit is not mechanical: the value is an
expression rather than a literal, a path step is a map or list attribute or a `dynamic` block, a
heredoc is in the way, a one-line block would have to grow. Nothing is guessed: such code is left
to a person.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from secai.analysis.fixlines import leading_space, neutral


class Unfixable(Exception):
    """The edit cannot be made mechanically; the message says why."""


@dataclass(frozen=True)
class Change:
    """What to do at the path's last step: `set` it to the literal `value` or to the expression
    `value` (`expr`, e.g. a reference to another resource), adding what is missing; `drop` the
    list members in `value`; or (YAML only) `add` the members of the list `value` it lacks."""

    kind: str
    value: object = None

    def text(self, literal) -> str:
        return self.value if self.kind == "expr" else literal(self.value)


# ---------------------------------------------------------------- rendering literals

def hcl_literal(value) -> str:
    """A JSON-like value as HCL: true, 7, "text", ["a", "b"]; Unfixable for maps and templates."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return json.dumps(value)
    if isinstance(value, str):
        if "${" in value or "%{" in value:
            raise Unfixable("the value would be a template")
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(hcl_literal(v) for v in value) + "]"
    raise Unfixable(f"no literal for a {type(value).__name__}")


def same_kind(a, b) -> bool:
    """Whether two literals are of one kind (bool, number, string, list): a value is only ever
    replaced by one of its own kind, so a wrongly typed expectation never reaches the code."""
    def kind(v):
        return "bool" if isinstance(v, bool) else "num" if isinstance(v, (int, float)) else type(v).__name__
    return kind(a) == kind(b)


# ---------------------------------------------------------------- HCL

_HCL_BLOCK = re.compile(r'^\s*([A-Za-z_][\w-]*)((?:\s+"[^"]*")*)\s*\{\s*(?:(?:#|//).*)?$')
_HCL_ATTR = re.compile(r"^(\s*)([A-Za-z_][\w-]*)(\s*=\s*)(.*?)\s*$")
_HCL_CODE = re.compile(r'"(?:[^"\\]|\\.)*"|#.*|//.*')
_HEREDOC = re.compile(r"<<-?\s*([A-Za-z_]\w*)\s*$")


def _hcl_depths(texts: list[str]) -> list[int]:
    """The bracket depth at the start of each line (and one more entry: the depth after the last
    line). A heredoc counts as one open bracket from its opening line to its end marker."""
    depths, depth, marker = [], 0, None
    for text in texts:
        depths.append(depth)
        if marker is not None:
            if text.strip() == marker:
                depth, marker = depth - 1, None
            continue
        if "/*" in text:
            raise Unfixable("block comments in the block")
        code = _HCL_CODE.sub(lambda m: '""' if m[0].startswith('"') else "", text)
        depth += sum(code.count(c) for c in "{[(") - sum(code.count(c) for c in "}])")
        if m := _HEREDOC.search(code if '"' not in code else text):
            depth, marker = depth + 1, m[1]
    depths.append(depth)
    return depths


def _hcl_end(depths: list[int], i: int) -> int:
    """The last line of the statement or block that starts on line i; Unfixable when it does not
    end in the lines given."""
    for j in range(i, len(depths) - 1):
        if depths[j + 1] <= depths[i]:
            return j
    raise Unfixable("the block does not end in the code shown")


def _hcl_children(texts, depths, start: int, end: int) -> list[tuple[str, str, int, int, re.Match]]:
    """(name, kind 'attr' | 'block' | 'dynamic' | 'other', first, last, match) of each direct child
    of the block whose braces open on line `start` and close on line `end`."""
    out, j, level = [], start + 1, depths[start] + 1
    while j < end:
        text = texts[j]
        if depths[j] != level or neutral(text, "hcl") or text.strip().startswith("//"):
            j += 1
            continue
        last = min(_hcl_end(depths, j), end - 1)
        if (m := _HCL_BLOCK.match(text)) and m[1] == "dynamic":
            out.append((m[2].strip().strip('"'), "dynamic", j, last, m))
        elif m:
            out.append((m[1], "block", j, last, m))
        elif m := _HCL_ATTR.match(text):
            out.append((m[2], "attr", j, last, m))
        else:  # a one-line block (`logging { enabled = true }`) or something else: named for refusal
            out.append((re.match(r"\s*([\w-]*)", text)[1], "other", j, last, None))
        j = last + 1
    return out


def _hcl_value(texts: list[str], first: int, last: int, match: re.Match):
    """The literal value of an attribute (JSON-compatible), or Unfixable for an expression."""
    text = " ".join([match[4]] + [t.strip() for t in texts[first + 1:last + 1]])
    text = _HCL_CODE.sub(lambda m: m[0] if m[0].startswith('"') else "", text).strip()
    try:
        return json.loads(re.sub(r",\s*]$", "]", text))
    except ValueError:
        raise Unfixable(f"the value is an expression: {text[:60]}") from None


def _hcl_unit(texts: list[str], start: int, depths: list[int]) -> str:
    for j in range(start + 1, len(texts)):
        if depths[j] == depths[start] + 1 and texts[j].strip():
            return leading_space(texts[j])[len(leading_space(texts[start])):] or "  "
    return "  "


def hcl_change(texts: list[str], start: int, path: tuple[str, ...], change: Change) -> list[str]:
    """The new lines of the HCL block that opens on texts[start], with `change` made at `path`
    (attribute names from the block down; nested blocks are the path's steps)."""
    depths = _hcl_depths(texts)
    end = _hcl_end(depths, start)
    if end == start or texts[end].strip() != "}":
        raise Unfixable("the block does not end on a line of its own")
    out = list(texts[start:end + 1])
    unit = _hcl_unit(texts, start, depths)
    open_at, close_at = start, end
    for n, step in enumerate(path):
        children = _hcl_children(texts, depths, open_at, close_at)
        found = [c for c in children if c[0] == step]
        if any(c[1] == "dynamic" for c in found):
            raise Unfixable(f"{step} is a dynamic block")
        if any(c[1] == "other" for c in found):
            raise Unfixable(f"{step} is written on one line or in a form not edited here")
        last_step = n == len(path) - 1
        if last_step and any(c[1] == "block" for c in found):
            raise Unfixable(f"{step} is a block, not an attribute")
        if not last_step and any(c[1] == "attr" for c in found):
            raise Unfixable(f"{step} is an attribute (a map or list), not a block")
        if not found:
            if change.kind not in ("set", "expr"):  # nothing to remove: no edit needed here
                raise Unfixable(f"{step} is not set")
            indent = leading_space(texts[open_at]) + unit
            if texts[close_at].strip() != "}":
                raise Unfixable(f"the block around {step} does not end on a line of its own")
            new = _hcl_nested(path[n:], change.text(hcl_literal), indent, unit)
            at = close_at - start
            attrs = [c for c in children if c[1] == "attr"]
            if len(new) == 1 and attrs:  # an attribute goes with the others, before the nested blocks
                at = attrs[-1][3] + 1 - start
            if len(new) > 1 and out[at - 1].strip() not in ("", "{") and not out[at - 1].rstrip().endswith("{"):
                new = [""] + new  # a new block stands apart, as terraform fmt leaves them
            return out[:at] + new + out[at:]
        name, kind, first, last, m = found[0]
        if not last_step:
            if last == first or texts[last].strip() != "}":
                raise Unfixable(f"{step} is a block that does not end on a line of its own")
            open_at, close_at = first, last
            continue
        value = _hcl_value(texts, first, last, m)
        a, b = first - start, last - start
        if change.kind == "drop":
            if not isinstance(value, list):
                raise Unfixable(f"{step} is not a list")
            kept = [v for v in value if v not in change.value]
            if not kept:
                raise Unfixable(f"every member of {step} is forbidden: what to allow instead is a choice")
            if last == first:
                return out[:a] + [m[1] + m[2] + m[3] + hcl_literal(kept) + _comment(texts[first])] + out[b + 1:]
            body = [t for t in out[a + 1:b] if _member(t) not in change.value]
            return out[:a + 1] + body + out[b:]
        if change.kind == "set" and not same_kind(value, change.value):
            raise Unfixable(f"{step} holds a {type(value).__name__}, the check expects a {type(change.value).__name__}")
        tail = _comment(texts[last]) if last == first else ""
        return out[:a] + [m[1] + m[2] + m[3] + change.text(hcl_literal) + tail] + out[b + 1:]
    raise Unfixable("empty path")


def _comment(text: str) -> str:
    """The comment a line of HCL ends with, with the space before it ('' when none)."""
    m = next((m for m in _HCL_CODE.finditer(text) if not m[0].startswith('"')), None)
    return text[len(text[:m.start()].rstrip()):] if m else ""


def _member(text: str):
    """The literal a line of a multi-line list holds (`"a",` -> "a"), or a marker no value equals."""
    try:
        return json.loads(_HCL_CODE.sub(lambda m: m[0] if m[0].startswith('"') else "", text).strip().rstrip(","))
    except ValueError:
        return _member


def _hcl_nested(path: tuple[str, ...], value: str, indent: str, unit: str) -> list[str]:
    """`a { b { c = value } }` as lines, the outermost at `indent`."""
    if len(path) == 1:
        return [f"{indent}{path[0]} = {value}"]
    return [f"{indent}{path[0]} {{", *_hcl_nested(path[1:], value, indent + unit, unit), f"{indent}}}"]


def hcl_block_end(texts: list[str], start: int) -> int:
    """The line that closes the HCL block opening on texts[start]; Unfixable when none does."""
    return _hcl_end(_hcl_depths(texts), start)


def hcl_block_start(texts: list[str], kind: str, labels: tuple[str, ...]) -> int:
    """The line that opens `kind "label" "label" {` (resource "aws_s3_bucket" "x"), or Unfixable."""
    want = re.compile(r"^\s*" + re.escape(kind) + "".join(r'\s+"' + re.escape(lb) + '"' for lb in labels) + r"\s*\{")
    found = [i for i, t in enumerate(texts) if want.match(t)]
    if len(found) != 1:
        raise Unfixable(f"{kind} {'.'.join(labels)} is {'not' if not found else 'more than once'} in the code shown")
    return found[0]
