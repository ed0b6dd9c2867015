"""secai.analysis.placement: one decision of where a fix lands, the same over a whole file (verification)
and over the code context's lines (SARIF)."""

from __future__ import annotations

import pytest

from secai.analysis.placement import NotPlaced, place
from secai.analysis.verify import place as verify_place
from secai.publishing.sarif import fix_placement

FILE = [
    "def a():",              # 1
    "    check(x)",          # 2
    "    return x",          # 3
    "",                      # 4
    "def b():",              # 5
    "    check(x)",          # 6  <- the finding
    "    token = 'hunter2'",  # 7
    "    return x",          # 8
]


def context(first: int, last: int, finding: int, **more) -> dict:
    return {"path": "app.py", "language": "python", "start_line": first, "end_line": last,
            "code": "\n".join(FILE[first - 1:last]), "finding_lines": [finding, finding], **more}


def both(ctx: dict, fix: dict):
    """(start, end, code) as placed in the whole file and in the context's own lines, which must agree."""
    whole = place(FILE, ctx, fix)
    window = place(ctx["code"].split("\n"), ctx, fix, first_line=ctx["start_line"])
    assert whole == window
    return whole.start, whole.end, whole.code


def test_of_two_occurrences_the_one_nearest_the_finding_is_replaced():
    fix = {"original": "check(x)", "code": "validate(x)"}
    assert both(context(1, 8, 6), fix) == (6, 6, ("    validate(x)",))
    assert both(context(1, 8, 2), fix) == (2, 2, ("    validate(x)",))


def test_only_lines_inside_the_context_are_candidates():
    with pytest.raises(NotPlaced):
        place(FILE, context(5, 8, 6), {"original": "def a():", "code": "def c():"})


def test_redacted_stands_for_the_secret_and_dedented_code_takes_the_indentation():
    ctx = context(5, 8, 7)
    ctx["code"] = ctx["code"].replace("hunter2", "[REDACTED]")
    assert both(ctx, {"original": "token = '[REDACTED]'\nreturn x", "code": "token = env('TOKEN')\nreturn x"}) == (
        7, 8, ("    token = env('TOKEN')", "    return x"))


def test_without_original_only_the_enclosing_unit_it_starts_like():
    unit = {"kind": "function", "name": "b", "start_line": 5, "end_line": 8}
    fix = {"code": "def b():\n    return validate(x)"}
    assert both(context(4, 8, 6, enclosing=unit), fix)[:2] == (5, 8)
    with pytest.raises(NotPlaced):
        place(FILE, context(4, 8, 6, enclosing=unit), {"code": "    return validate(x)"})
    with pytest.raises(NotPlaced):  # the unit runs past the lines read: nothing to place it by
        place(FILE[5:8], context(6, 8, 6, enclosing=unit), fix, first_line=6)


def test_verification_and_sarif_replace_the_same_lines_with_the_same_code():
    ctx = context(1, 8, 6)
    fix = {"language": "python", "original": "check(x)", "code": "validate(x)"}
    fixed, first, last = verify_place("\n".join(FILE), ctx, fix)
    placed = fix_placement({"location": {"path": "app.py", "start_line": 6}}, {"fix": fix}, ctx)
    lines = FILE[:placed.start - 1] + list(placed.code) + FILE[placed.end:]
    assert "\n".join(lines) == fixed and (placed.start, placed.fixed_end) == (first, last) == (6, 6)
