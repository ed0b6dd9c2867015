"""GitHub code scanning's `primaryLocationLineHash`: the line fingerprint its upload action
(github/codeql-action, src/fingerprints.ts) computes from the checkout when a SARIF result has
none, computed here the same way so that secai's log carries it and the action has nothing to add.

The algorithm, as the action defines it:
- The file is read as UTF-8 (an invalid byte becomes U+FFFD) and walked in UTF-16 code units,
  as JavaScript strings are.
- Spaces and tabs are skipped; CR, LF and CRLF each count as one LF.
- A rolling hash over a window of the next 100 kept code units: h = 37·h + c − 37¹⁰⁰·c₋₁₀₀,
  in wrapping 64-bit arithmetic (Long, printed unsigned in lower-case hex without leading zeros).
  The file's end adds one code unit 65535, then 100 zeros flush the last lines.
- A line's hash is the hash of the 100 kept code units from its first one (its newline and the
  lines after it included). Each line's value is `HEX:N`, N counting how many lines so far
  (this one included) had the same HEX, so repeated lines stay apart.
- A file ending in a newline has one more line, holding only the end mark.
- A result takes the hash of its primary location's startLine.
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Iterable
from pathlib import Path

BLOCK = 100
MOD = 37
MASK = (1 << 64) - 1
FIRST_MOD = pow(MOD, BLOCK, 1 << 64)
END = 65535  # what the action feeds after the last character
_SPACE, _TAB, _LF, _CR = 0x20, 0x09, 0x0A, 0x0D


def _units(text: str) -> array:
    units = array("H", text.encode("utf-16-le", "surrogatepass"))
    if sys.byteorder == "big":
        units.byteswap()
    return units


def line_hashes(text: str, wanted: Iterable[int] | None = None) -> dict[int, str]:
    """{line number (1-based): "hex:n"} of `text`, for every line or only the `wanted` ones (the
    walk then stops once they have theirs: a line's value depends only on what comes before it
    and the 100 kept code units after its start)."""
    need = None if wanted is None else set(wanted)
    out: dict[int, str] = {}
    if need is not None and not need:
        return out
    window = [0] * BLOCK
    starts = [-1] * BLOCK  # the line number starting at each window slot, or -1
    counts: dict[int, int] = {}
    h = index = line = 0
    line_start, prev_cr = True, False

    def emit():
        counts[h] = n = counts.get(h, 0) + 1
        number = starts[index]
        if need is None or number in need:
            out[number] = f"{h:x}:{n}"
        starts[index] = -1

    def done() -> bool:
        return need is not None and len(out) == len(need)

    for c in [*_units(text), END]:
        if c == _SPACE or c == _TAB or (prev_cr and c == _LF):
            prev_cr = False
            continue
        if c == _CR:
            c, prev_cr = _LF, True
        else:
            prev_cr = False
        if starts[index] != -1:
            emit()
            if done():
                return out
        if line_start:
            line_start = False
            line += 1
            starts[index] = line
        if c == _LF:
            line_start = True
        begin, window[index] = window[index], c
        h = (MOD * h + c - FIRST_MOD * begin) & MASK
        index = (index + 1) % BLOCK
    for _ in range(BLOCK):
        if starts[index] != -1:
            emit()
            if done():
                return out
        begin, window[index] = window[index], 0
        h = (MOD * h - FIRST_MOD * begin) & MASK
        index = (index + 1) % BLOCK
    return out


def file_line_hashes(path: Path, wanted: Iterable[int]) -> dict[int, str]:
    """The `wanted` lines' hashes of the file at `path`; {} when it is not a readable regular file
    (the action then has nothing to hash either)."""
    try:
        if not path.is_file():
            return {}
        data = path.read_bytes()
    except OSError:
        return {}
    return line_hashes(data.decode("utf-8", "replace"), wanted)
