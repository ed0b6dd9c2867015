"""The one editor of YAML key paths: a path set in a block mapping by line edits, every other line
kept as written. It makes the `set` edits of the fix rules (secai.analysis.fixrules) and the fixes
from checkov's expectations (secai.analysis.iacfix).

    lines = set_key(lines, ("securityContext", "runAsNonRoot"), "true", targets, keep, unit)
    new = yaml_change(texts, first, last, ("Properties", "IsLogging"), Change("set", True), unit)

A target is (first, last, column) of a block mapping: the items of a list (`items`: every
container of `containers:`), the mapping a line is a key of (`holder`: the pod spec that holds
`containers:`), or the lines yaml_change is given (one CloudFormation resource, one Kubernetes
document). The path is walked key by key at the mapping's column. A missing key is added at the
end of its mapping, with the mappings below it (a container without a `securityContext` gets
one; an empty or null mapping gets its first key). At the last key the Change
(secai.analysis.iacedit) is made:
- `set` a literal (yaml_literal), replacing only a value of its own kind (true and "true" count as one);
- `expr` YAML text, written as is (a fix rule's `to`, a `!GetAtt`), unless `keep` matches the value;
- `add` the list members it lacks (`drop: [NET_RAW]` + [ALL] -> `[NET_RAW, ALL]`): nothing it holds is lost;
- `drop` list members, when others remain (what to allow instead of all of them is a choice).
A value already as wanted is left alone; a comment after it is kept. What cannot be edited
mechanically raises Unfixable: a flow mapping or a list on the path, a key holding a block where
a value should go, a value that does not read as YAML.

item_facts gives the fix rules' `insert` edits facts of each anchor's own item (a container's own
containerPort, for a probe put below its `image:`).
"""

from __future__ import annotations

import json
import re

import yaml

from secai.analysis.fixlines import Line, block_end, key_indent, leading_space, neutral
from secai.analysis.iacedit import Change, Unfixable, hcl_literal, same_kind

# a mapping line: list markers, the key (quoted or plain), the colon, the inline value with its comment
_KEY = re.compile(r"""^(?P<lead>\s*(?:-[ \t]+)*)(?P<key>"[^"]*"|'[^']*'|[^\s#'"{\[\-][^#]*?|-[^\s#][^#]*?)"""
                  r"""(?P<colon>\s*:)(?:[ \t]+(?P<value>.*?))?\s*$""")
_COMMENT = re.compile(r"(?:^|\s+)#.*$")
_PLAIN = re.compile(r"^[A-Za-z_/][\w./-]*$")
_MARKERS = ("---", "...")


def _column(text: str) -> int:
    return len(key_indent(text, "yaml"))


def _name(m: re.Match) -> str:
    raw = m["key"]
    return raw[1:-1] if raw[:1] in "\"'" and raw[-1:] == raw[:1] else raw


def _inline(m: re.Match) -> str:
    """A key's inline value without its comment ('' when none)."""
    return _COMMENT.sub("", m["value"] or "").strip()


def _scalar(raw: str):
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        raise Unfixable(f"the value does not read as YAML: {raw[:60]}") from None


def yaml_literal(value) -> str:
    """A JSON-like value as a YAML flow scalar or sequence that reads back as the same value."""
    if isinstance(value, list):
        return "[" + ", ".join(yaml_literal(v) for v in value) + "]"
    if isinstance(value, str):
        plain = _PLAIN.match(value) and yaml.safe_load(value) == value
        return value if plain else json.dumps(value, ensure_ascii=False)
    if isinstance(value, (bool, int, float)):
        return hcl_literal(value)
    raise Unfixable(f"no literal for a {type(value).__name__}")


def _keys(lines: list[Line], first: int, last: int, col: int):
    """(line, match) of each key at column `col` of the block mapping in lines[first..last]."""
    for j in range(first, last + 1):
        text = lines[j].text
        if neutral(text, "yaml") or text.strip() in _MARKERS:
            continue
        if _column(text) < col:
            return
        if _column(text) == col and (m := _KEY.match(text)):
            yield j, m


def _start(lines: list[Line], first: int, last: int) -> int | None:
    """The first line of the mapping in lines[first..last] (None when there is none)."""
    return next((j for j in range(first, last + 1)
                 if not neutral(lines[j].text, "yaml") and lines[j].text.strip() not in _MARKERS), None)


def yaml_children(texts: list[str], first: int, last: int) -> tuple[int | None, dict[str, tuple[int, int, re.Match]]]:
    """(column of the keys, {key: (line, last line, match)}) of the block mapping in texts[first..last]."""
    rows = [Line(i, t, True) for i, t in enumerate(texts)]
    top = _start(rows, first, last)
    if top is None:
        return None, {}
    col, keys = _column(texts[top]), {}
    for j, m in _keys(rows, top, last, col):
        keys.setdefault(_name(m), (j, min(block_end(rows, j, "yaml"), last), m))
    return col, keys


def yaml_scalar(match: re.Match):
    """The value of a key line that yaml_children found (None when it holds a block)."""
    return _scalar(_inline(match)) if _inline(match) else None


def items(lines: list[Line], i: int) -> list[tuple[int, int, int]]:
    """(first, last, column) of each mapping item of the block list that lines[i] (`key:`) opens."""
    end = block_end(lines, i, "yaml")
    dashes = [j for j in range(i + 1, end + 1) if lines[j].text.lstrip().startswith("- ")]
    if not dashes:
        return []
    lead = min(len(leading_space(lines[j].text)) for j in dashes)
    starts = [j for j in dashes if len(leading_space(lines[j].text)) == lead]
    out = []
    for n, j in enumerate(starts):
        last = starts[n + 1] - 1 if n + 1 < len(starts) else end
        while last > j and neutral(lines[last].text, "yaml"):
            last -= 1
        if _KEY.match(lines[j].text) is None:
            raise Unfixable("a list item that is not a block mapping")
        out.append((j, last, _column(lines[j].text)))
    return out


def holder(lines: list[Line], i: int) -> tuple[int, int, int]:
    """(first, last, column) of the block mapping that lines[i] is a key of."""
    col = _column(lines[i].text)

    def level(j: int) -> int:
        return len(leading_space(lines[j].text))

    first = i
    for j in range(i - 1, -1, -1) if level(i) == col else ():  # from a `- key:` line: it opens the mapping
        if neutral(lines[j].text, "yaml"):
            continue
        if lines[j].text.strip() in _MARKERS:
            break
        if level(j) < col:
            if _column(lines[j].text) == col:
                first = j  # the `- key:` line that opens this list item's mapping
            break
        first = j
    last = i
    for j in range(i + 1, len(lines)):
        if neutral(lines[j].text, "yaml"):
            continue
        if level(j) < col or lines[j].text.strip() in _MARKERS:
            break
        last = j
    return first, last, col


def item_facts(lines: list[Line], anchors: list[int], find: re.Pattern | None,
               unless: re.Pattern | None) -> dict[int, dict]:
    """{anchor: facts} of each anchor line's own item, the mapping it is a key of (a container, for
    its `image:` line): the named groups of the one line there that matches `find` (the container's
    own containerPort). An item with a line matching `unless` is left out (it has what the edit
    adds); one where `find` matches no line or several raises Unfixable (its value is not known)."""
    out = {}
    for i in anchors:
        first, last, _ = holder(lines, i)
        texts = [lines[j].text for j in range(first, last + 1) if not neutral(lines[j].text, "yaml")]
        if unless is not None and any(unless.search(t) for t in texts):
            continue
        found = [m for t in texts if (m := find.search(t))] if find is not None else [None]
        if len(found) != 1:
            raise Unfixable(f"{len(found)} lines of the item at line {i + 1} match {find.pattern!r}, not one")
        out[i] = {k: v for k, v in found[0].groupdict().items() if v is not None} if found[0] else {}
    return out


def joined(facts: list[dict]) -> dict[str, str]:
    """The facts of several items as one: each name's distinct values in item order, joined by ', '."""
    names = dict.fromkeys(k for f in facts for k in f)
    return {k: ", ".join(dict.fromkeys(f[k] for f in facts if k in f)) for k in names}


def _edit(lines: list[Line], target: tuple[int, int, int], path: tuple[str, ...], change: Change,
          keep: re.Pattern | None, unit: str) -> list[Line]:
    first, last, col = target
    for n, step in enumerate(path):
        hit = next(((j, m) for j, m in _keys(lines, first, last, col) if _name(m) == step), None)
        if hit is None:
            if change.kind == "drop":
                raise Unfixable(f"{step} is not set")
            return _insert(lines, last, col, path[n:], change, unit)
        found, m = hit
        inline, end = _inline(m), min(block_end(lines, found, "yaml"), last)
        if n == len(path) - 1:
            return _last(lines, found, end, m, change, keep)
        if inline and inline not in ("null", "~"):
            raise Unfixable(f"{step} is not a block mapping")
        children = [j for j in range(found + 1, end + 1) if not neutral(lines[j].text, "yaml")]
        if not children:
            if inline:  # `securityContext: null`: the mapping goes in its place
                _rewrite(lines[found], m, None)
            return _insert(lines, found, col + len(unit), path[n + 1:], change, unit)
        if lines[children[0]].text.lstrip().startswith("- "):
            raise Unfixable(f"{step} holds a list, not a mapping")
        first, last, col = children[0], end, _column(lines[children[0]].text)
    raise Unfixable("empty path")


def _insert(lines: list[Line], after: int, col: int, path: tuple[str, ...], change: Change, unit: str) -> list[Line]:
    """The path's mappings and value as new lines after lines[after], the first key at column `col`."""
    new = [f"{' ' * (col + len(unit) * k)}{s}:" for k, s in enumerate(path[:-1])]
    new.append(f"{' ' * (col + len(unit) * (len(path) - 1))}{path[-1]}: {change.text(yaml_literal)}")
    return lines[:after + 1] + [Line(None, t, True, True, lines[after].home) for t in new] + lines[after + 1:]


def _rewrite(line: Line, m: re.Match, value: str | None) -> None:
    """The key's inline value replaced by `value` (None: removed), the key and the comment kept as written."""
    c = _COMMENT.search(m["value"] or "")
    comment = (c[0] if c[0][:1].isspace() else " " + c[0]) if c else ""
    if value is None:
        head, value = line.text[:m.end("colon")], ""
    else:
        head = line.text[:m.start("value")] if _inline(m) else line.text[:m.end("colon")] + " "
    line.text, line.changed = head + value + comment, True


def _last(lines: list[Line], found: int, end: int, m: re.Match, change: Change, keep: re.Pattern | None) -> list[Line]:
    """The change made at the path's last key, lines[found] (its block ends at lines[end])."""
    step, inline = _name(m), _inline(m)
    if change.kind == "add":
        return _add_members(lines, found, end, m, change.value)
    if change.kind == "drop":
        return _drop_members(lines, found, end, m, change.value)
    if end > found:
        raise Unfixable(f"{step} holds a block, not a value")
    if change.kind == "set":
        value = _scalar(inline) if inline else None
        boolean = isinstance(value, str) and isinstance(change.value, bool) and value.lower() in ("true", "false")
        if value is None or not (same_kind(value, change.value) or boolean):
            raise Unfixable(f"{step} holds {'no value' if value is None else 'a ' + type(value).__name__}, "
                            f"the check expects a {type(change.value).__name__}")
    text = change.text(yaml_literal)
    if inline != text and not (keep is not None and inline and keep.fullmatch(inline)):
        _rewrite(lines[found], m, text)
    return lines


def _add_members(lines: list[Line], found: int, end: int, m: re.Match, wanted: list) -> list[Line]:
    """The list at lines[found] with the members of `wanted` it lacks added at its end."""
    inline = _inline(m)
    if inline:
        have = _scalar(inline)
        if not isinstance(have, list) or not inline.endswith("]"):
            raise Unfixable(f"{_name(m)} holds no flow list")
        missing = [v for v in wanted if v not in have]
        if missing:
            text = lines[found].text
            at = text.rindex(inline) + len(inline) - 1
            sep = ", " if have else ""
            lines[found].text = text[:at].rstrip() + sep + ", ".join(yaml_literal(v) for v in missing) + text[at:]
            lines[found].changed = True
        return lines
    rows = [j for j in range(found + 1, end + 1) if not neutral(lines[j].text, "yaml")]
    if not rows or not all(lines[j].text.lstrip().startswith("- ") for j in rows):
        raise Unfixable(f"{_name(m)} holds no block list")
    have = [_scalar(_COMMENT.sub("", lines[j].text.lstrip()[2:])) for j in rows]
    missing = [v for v in wanted if v not in have]
    prefix = leading_space(lines[rows[-1]].text) + "- "
    new = [Line(None, prefix + yaml_literal(v), True, True, lines[rows[-1]].home) for v in missing]
    return lines[:rows[-1] + 1] + new + lines[rows[-1] + 1:]


def _drop_members(lines: list[Line], found: int, end: int, m: re.Match, forbidden: list) -> list[Line]:
    """The list at lines[found] without the members in `forbidden`, when others remain."""
    step, inline = _name(m), _inline(m)
    if inline:
        value = _scalar(inline)
        if not isinstance(value, list) or end > found:
            raise Unfixable(f"{step} is not a list")
        kept = [v for v in value if v not in forbidden]
        if not kept:
            raise Unfixable(f"every member of {step} is forbidden: what to allow instead is a choice")
        if kept != value:
            _rewrite(lines[found], m, yaml_literal(kept))
        return lines
    items = [k for k in range(found + 1, end + 1) if lines[k].text.lstrip().startswith("- ")]
    raw = {k: _COMMENT.sub("", lines[k].text.lstrip()[2:]).strip() for k in items}
    values = {k: _scalar(raw[k]) for k in items}
    if any(raw[k] == "" or isinstance(values[k], (dict, list)) for k in items):
        raise Unfixable(f"{step} holds structured items")
    gone = {k for k in items if values[k] in forbidden}
    if not gone or len(gone) == len(items):
        raise Unfixable(f"every member of {step} is forbidden: what to allow instead is a choice"
                        if gone else f"{step} holds none of the forbidden values")
    return [ln for k, ln in enumerate(lines) if k not in gone]


def set_key(lines: list[Line], path: tuple[str, ...], value: str, targets: list[tuple[int, int, int]],
            keep: re.Pattern | None, unit: str) -> list[Line]:
    """`lines` with path set to the YAML text `value` (a list: its members added) in each target
    mapping (bottom-up, so that the targets' indexes stay valid)."""
    wanted = _scalar(value)
    change = Change("add", wanted) if isinstance(wanted, list) else Change("expr", value)
    for target in sorted(targets, reverse=True):
        lines = _edit(lines, target, path, change, keep, unit)
    return lines


def yaml_change(texts: list[str], first: int, last: int, path: tuple[str, ...], change: Change,
                unit: str = "  ") -> list[str]:
    """The new lines texts[first..last] (a block mapping, e.g. one CloudFormation resource or one
    Kubernetes document) with `change` made at `path` (keys from that mapping down)."""
    rows = [Line(i, t, True) for i, t in enumerate(texts[first:last + 1])]
    top = _start(rows, 0, len(rows) - 1)
    if top is None:
        raise Unfixable("no mapping in the lines given")
    tail = max(j for j, ln in enumerate(rows) if not neutral(ln.text, "yaml"))
    return [ln.text for ln in _edit(rows, (top, tail, _column(rows[top].text)), path, change, None, unit)]
