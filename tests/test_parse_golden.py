"""Golden fixtures: tests/fixtures/parse/<format>/<case>.<ext> beside <case>.expected.jsonl.

Each case is parsed with its folder as the working directory; the output must equal the expected
records exactly. `python tests/test_parse_golden.py --regen [CASE...]` rewrites expected files (a CASE is a path, or
a bare file name matching that name in every format folder)
(review the diff before committing: a golden file is a claim about what is right).
"""

from __future__ import annotations

import sys
from pathlib import Path

import orjson
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from conftest import FIXTURES, run_command  # noqa: E402

from secai.records import dumps, schema_error  # noqa: E402
from secai.commands.parse import Parse  # noqa: E402

CASES = sorted(p for p in (FIXTURES / "parse").glob("*/*")
               if p.is_file() and not p.name.endswith(".expected.jsonl") and not p.name.startswith("."))


def _parse(case: Path):
    return run_command(Parse, ["-q", case.name], cwd=case.parent)


@pytest.mark.parametrize("case", CASES, ids=[f"{c.parent.name}/{c.name}" for c in CASES])
def test_golden(case: Path):
    expected_file = case.with_name(case.name.rsplit(".", 1)[0] + ".expected.jsonl")
    assert expected_file.exists(), f"{expected_file} is missing (run with --regen and review it)"
    code, records, err = _parse(case)
    assert code == 0, err
    for rec in records:
        assert schema_error("finding/1", rec) is None
    expected = [orjson.loads(line) for line in expected_file.read_text().splitlines() if line.strip()]
    assert records == expected
    assert len({r["id"] for r in records}) == len(records)


def test_every_format_has_golden_fixtures():
    from secai.parsing.formats import FORMATS

    covered = set()
    for case in CASES:
        code, records, err = _parse(case)
        covered.update(r["source"]["format"] for r in records)
    assert {f.name for f in FORMATS} <= covered


if __name__ == "__main__":
    if sys.argv[1:2] != ["--regen"]:
        sys.exit("usage: python tests/test_parse_golden.py --regen [CASE...]")
    wanted = {str(Path(a).resolve()) if "/" in a else a for a in sys.argv[2:]}  # paths, or bare names
    for case in CASES:
        if wanted and case.name not in wanted and str(case.resolve()) not in wanted:
            continue
        code, records, err = _parse(case)
        if code != 0:
            sys.exit(f"{case}: {err}")
        case.with_name(case.name.rsplit(".", 1)[0] + ".expected.jsonl").write_bytes(b"".join(dumps(r) for r in records))
        print(f"wrote {len(records)} records for {case}", file=sys.stderr)
