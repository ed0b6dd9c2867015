"""The `set` edit of a YAML fix rule (secai.analysis.fixrules): a key path set in each mapping the
rule targets, as written, every other line kept.

    lines = set_key(lines, positions, ("securityContext", "runAsNonRoot"), "true", targets, deleted, unit)

`targets` are (first, last, column) of block mappings (see `items` and `holder`): the items of a
list (every container of `containers:`), or the mapping a line is a key of (the pod spec that
holds `containers:`). In each, the path is walked key by key at the mapping's column: a missing
key is added at the end of its mapping, with the mappings below it (so a container without a
`securityContext` gets one); the last key's value is replaced, unless `keep` matches it; a list
value gains the members of a list `value` it lacks (`drop: [NET_RAW]` + `[ALL]` -> `[NET_RAW,
ALL]`), so nothing it already holds is lost. A flow mapping on the path, or a key holding a block
where a scalar should go, is not mechanical: NotMechanical.
"""

from __future__ import annotations

import re

import yaml

from secai.analysis.fixlines import Line, block_end, key_indent, leading_space, neutral

_KEY = re.compile(r"""^(?P<key>[\w./-]+|"[^"]*"|'[^']*')\s*:(?:[ \t]+(?P<value>.*?))?\s*$""")
_PLAIN = re.compile(r"^[\w./-]+$")


class NotMechanical(Exception):
    """The code cannot be edited mechanically here; the message says why."""


def _column(text: str) -> int:
    return len(key_indent(text, "yaml"))


def _key(text: str) -> tuple[str, str] | None:
    """(key, inline value without a comment) of a mapping line, else None."""
    m = _KEY.match(text[_column(text):])
    if m is None:
        return None
    key = m["key"][1:-1] if m["key"][:1] in "\"'" else m["key"]
    return key, re.sub(r"(^|\s+)#.*$", "", m["value"] or "").strip()


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
        if _key(lines[j].text) is None:
            raise NotMechanical("a list item that is not a block mapping")
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
        if lines[j].text.strip() in ("---", "..."):
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
        if level(j) < col or lines[j].text.strip() in ("---", "..."):
            break
        last = j
    return first, last, col


def _render(member) -> str:
    text = str(member)
    return text if _PLAIN.match(text) else '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _set_one(lines: list[Line], target: tuple[int, int, int], path: tuple[str, ...], value: str,
             keep: re.Pattern | None, deleted: set, unit: str) -> list[Line]:
    first, last, col = target
    wanted = yaml.safe_load(value)
    for n, step in enumerate(path):
        found = next((j for j in range(first, last + 1) if not neutral(lines[j].text, "yaml")
                      and _column(lines[j].text) == col and (_key(lines[j].text) or ("",))[0] == step), None)
        if found is None:
            head = lines[last]
            new = [f"{' ' * (col + len(unit) * k)}{s}:" for k, s in enumerate(path[n:-1])]
            new.append(f"{' ' * (col + len(unit) * (len(path) - n - 1))}{path[-1]}: {value}")
            at = last + 1
            return lines[:at] + [Line(None, t, True, True, head.home) for t in new] + lines[at:]
        key, inline = _key(lines[found].text)
        end = block_end(lines, found, "yaml")
        if n < len(path) - 1:
            if inline and inline not in ("null", "~"):
                raise NotMechanical(f"{step} is not a block mapping")
            children = [j for j in range(found + 1, end + 1) if not neutral(lines[j].text, "yaml")]
            if not children:
                if inline:  # `securityContext: null`: the mapping goes in its place
                    lines[found].text, lines[found].changed = lines[found].text.split(":")[0] + ":", True
                return _add_under(lines, found, col + len(unit), path[n + 1:], value, unit)
            first, last, col = children[0], end, _column(lines[children[0]].text)
            continue
        text = lines[found].text
        if isinstance(wanted, list):
            return _add_members(lines, found, end, inline, wanted)
        if keep is not None and inline and keep.fullmatch(inline):
            return lines
        if inline == value and end == found:
            return lines
        comment = re.search(r"\s+#.*$", text) if inline else None
        lines[found].text = text[:_column(text)] + f"{key}: {value}" + (comment[0] if comment else "")
        lines[found].changed = True
        gone = set(range(found + 1, end + 1))
        deleted.update(lines[j].home for j in gone)
        return [ln for j, ln in enumerate(lines) if j not in gone]
    raise NotMechanical("empty path")


def _add_under(lines: list[Line], at: int, col: int, path: tuple[str, ...], value: str, unit: str) -> list[Line]:
    """The path's mappings and value as the first lines under lines[at] (an empty mapping key)."""
    new = [f"{' ' * (col + len(unit) * k)}{s}:" for k, s in enumerate(path[:-1])]
    new.append(f"{' ' * (col + len(unit) * (len(path) - 1))}{path[-1]}: {value}")
    return lines[:at + 1] + [Line(None, t, True, True, lines[at].home) for t in new] + lines[at + 1:]


def _add_members(lines: list[Line], found: int, end: int, inline: str, wanted: list) -> list[Line]:
    """The list at lines[found] with the members of `wanted` it lacks added at its end."""
    if inline:
        try:
            have = yaml.safe_load(inline)
        except yaml.YAMLError:
            raise NotMechanical("the list does not read as YAML") from None
        if not isinstance(have, list) or not inline.endswith("]"):
            raise NotMechanical("the key holds no flow list")
        missing = [m for m in wanted if m not in have]
        if missing:
            text = lines[found].text
            at = text.rindex(inline) + len(inline) - 1
            sep = ", " if have else ""
            lines[found].text = text[:at].rstrip() + sep + ", ".join(_render(m) for m in missing) + text[at:]
            lines[found].changed = True
        return lines
    rows = [j for j in range(found + 1, end + 1) if not neutral(lines[j].text, "yaml")]
    if not rows or not all(lines[j].text.lstrip().startswith("- ") for j in rows):
        raise NotMechanical("the key holds no block list")
    have = [yaml.safe_load(lines[j].text.lstrip()[2:].split(" #")[0]) for j in rows]
    missing = [m for m in wanted if m not in have]
    prefix = lines[rows[-1]].text[:len(leading_space(lines[rows[-1]].text))] + "- "
    new = [Line(None, prefix + _render(m), True, True, lines[rows[-1]].home) for m in missing]
    return lines[:rows[-1] + 1] + new + lines[rows[-1] + 1:]


def set_key(lines: list[Line], path: tuple[str, ...], value: str, targets: list[tuple[int, int, int]],
            keep: re.Pattern | None, deleted: set, unit: str) -> list[Line]:
    """`lines` with path set to the YAML text `value` in each target mapping (bottom-up, so that
    the targets' indexes stay valid)."""
    for target in sorted(targets, reverse=True):
        lines = _set_one(lines, target, path, value, keep, deleted, unit)
    return lines
