"""secai-parse inputs: files, directories, zips, stdin; bad input of every kind; dedup; determinism."""

from __future__ import annotations

import io
import zipfile

import orjson
import pytest
from conftest import FIXTURES, run_command

from secai.cli import schema_error
from secai.parsing.reports import Parse

SPEC = FIXTURES / "parse" / "sarif" / "spec-features.sarif"
GOOD = SPEC.read_bytes()


def one_error_line(err: str) -> str:
    lines = [l for l in err.splitlines() if l.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


# ---------------------------------------------------------------- bad input

def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<OWASPZAPReport><site name="&lol3;"/></OWASPZAPReport>"""
EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE r [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><OWASPZAPReport><site name="&xxe;"/></OWASPZAPReport>"""

BAD = {
    "empty.json": (b"", "empty file"),
    "blank.json": (b"  \n\n ", "empty file"),
    "truncated.sarif": (GOOD[: len(GOOD) // 2], "invalid JSON"),
    "unknown.json": (b'{"name": "my-app", "dependencies": {}}', "not a known report format"),
    "junk.bin": (bytes(range(256)) * 40, "binary data"),
    "notes.txt": (b"just some notes\n", "neither JSON nor XML"),
    "bomb.xml": (BILLION_LAUGHS, "refused XML"),
    "xxe.xml": (EXTERNAL_ENTITY, "refused XML"),
    "broken.xml": (b"<OWASPZAPReport><site>", "invalid XML"),
    "traversal.zip": (_zip({"../../etc/evil.sarif": GOOD}), "escapes the archive"),
    "absolute.zip": (_zip({"/etc/evil.sarif": GOOD}), "escapes the archive"),
    "zipbomb.zip": (_zip({"big.json": b"[" + b" " * (60 * 1024 * 1024) + b"]"}), "zip bomb"),
    "badzip.zip": (b"PK\x03\x04" + b"\x00" * 100, "bad zip"),
    "wrongtype.sarif": (b'{"version": "2.1.0", "runs": [{"tool": {"driver": {"name": "x"}}, "results": {"a": 1}}]}',
                        "$.runs[0].results: expected array"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_input_is_one_clear_line_and_exit_1(tmp_path, name):
    data, reason = BAD[name]
    path = tmp_path / name
    path.write_bytes(data)
    code, records, err = run_command(Parse, [str(path)])
    assert code == 1 and records == []
    line = one_error_line(err)
    assert line.startswith(f"secai-parse: error: {path}") and reason in line


@pytest.mark.parametrize("name", sorted(BAD))
def test_rejects_keep_good_inputs(tmp_path, name):
    data, reason = BAD[name]
    (tmp_path / name).write_bytes(data)
    (tmp_path / "good.sarif").write_bytes(GOOD)
    out, rejects = tmp_path / "out.jsonl", tmp_path / "rejects.jsonl"
    code, _, err = run_command(Parse, ["-q", str(tmp_path / name), str(tmp_path / "good.sarif"),
                                       "-o", str(out), "--rejects", str(rejects)])
    assert code == 0, err
    assert len(out.read_bytes().splitlines()) == 6
    rejected = [orjson.loads(l) for l in rejects.read_bytes().splitlines()]
    assert len(rejected) == 1 and reason in rejected[0]["reason"] and str(tmp_path / name) in rejected[0]["file"]


def test_failure_leaves_no_partial_output(tmp_path):
    (tmp_path / "bad.json").write_bytes(b"{")
    out = tmp_path / "out.jsonl"
    code, _, _ = run_command(Parse, [str(tmp_path / "bad.json"), "-o", str(out)])
    assert code == 1 and not out.exists() and list(tmp_path.iterdir()) == [tmp_path / "bad.json"]


def test_size_limit(tmp_path):
    (tmp_path / "r.sarif").write_bytes(GOOD)
    code, _, err = run_command(Parse, ["--max-file-mb", "0.001", str(tmp_path / "r.sarif")])
    assert code == 1 and "limit" in one_error_line(err)


def test_a_50_mb_report_parses(tmp_path):
    result = orjson.loads(GOOD)["runs"][0]["results"][0]
    doc = orjson.loads(GOOD)
    doc["runs"][0]["results"] = [
        {**result, "locations": [{"physicalLocation": {"artifactLocation": {"uri": f"src/m{i}.py"},
                                                        "region": {"startLine": i % 900 + 1}}}],
         "message": {"text": "x" * 300}} for i in range(90_000)]
    data = orjson.dumps(doc)
    assert len(data) > 50 * 1024 * 1024 / 2
    data = data.replace(b'"version":"2.1.0"', b'"version":"2.1.0","pad":"' + b" " * (50 * 1024 * 1024 - len(data)) + b'"')
    assert len(data) >= 50 * 1024 * 1024
    (tmp_path / "big.sarif").write_bytes(data)
    code, records, err = run_command(Parse, ["-q", str(tmp_path / "big.sarif")])
    assert code == 0, err
    assert len(records) == 90_000


# ---------------------------------------------------------------- inputs

def test_directories_are_walked_recursively_and_unknown_files_skipped(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "r.sarif").write_bytes(GOOD)
    (tmp_path / "a" / "README.md").write_bytes(b"# notes")
    (tmp_path / "a" / "package.json").write_bytes(b'{"name": "x"}')
    code, records, err = run_command(Parse, [str(tmp_path)])
    assert code == 0 and len(records) == 6
    assert "skipped" in err and "README.md" in err and "package.json" in err


def test_artifact_zip_members_are_read(tmp_path):
    (tmp_path / "artifact.zip").write_bytes(_zip({"reports/codeql.sarif": GOOD, "reports/log.txt": b"done"}))
    code, records, err = run_command(Parse, ["-q", str(tmp_path / "artifact.zip")])
    assert code == 0, err
    assert len(records) == 6 and records[0]["source"]["file"] == f"{tmp_path}/artifact.zip!reports/codeql.sarif"


def test_stdin_and_utf16_bom():
    code, records, _ = run_command(Parse, ["-q"], stdin=GOOD.decode().encode("utf-16"))
    assert code == 0 and len(records) == 6 and records[0]["source"]["file"] == "-"


@pytest.mark.parametrize("doc", [b"null", b"[]", b"{}"])
def test_empty_json_documents_are_empty_reports(doc):
    code, records, err = run_command(Parse, [], stdin=doc)
    assert code == 0 and records == [] and "empty report" in err


def test_duplicates_merge_with_occurrences_and_output_is_deterministic(tmp_path):
    (tmp_path / "one.sarif").write_bytes(GOOD)
    (tmp_path / "two.sarif").write_bytes(GOOD)
    code, records, err = run_command(Parse, [str(tmp_path / "one.sarif"), str(tmp_path / "two.sarif")])
    assert code == 0 and len(records) == 6 and all(r["occurrences"] == 2 for r in records)
    assert all(r["source"]["file"].endswith("one.sarif") for r in records)
    assert "6 duplicates merged" in err
    again = run_command(Parse, ["-q", str(tmp_path / "one.sarif"), str(tmp_path / "two.sarif")])[1]
    assert orjson.dumps(records) == orjson.dumps(again)


def test_ids_do_not_depend_on_run_metadata(tmp_path):
    (tmp_path / "r.sarif").write_bytes(GOOD)
    a = run_command(Parse, ["-q", str(tmp_path / "r.sarif"), "--run-id", "1", "--commit", "aaa"])[1]
    b = run_command(Parse, ["-q", str(tmp_path / "r.sarif"), "--run-id", "2", "--branch", "dev"])[1]
    assert [r["id"] for r in a] == [r["id"] for r in b]
    assert a[0]["source"]["run_id"] == "1" and b[0]["source"]["branch"] == "dev"


def test_forced_format_and_list_formats(tmp_path):
    from secai.parsing.formats import FORMATS

    code, listing, err = run_command(Parse, ["--list-formats"], raw=True)
    assert code == 0 and [line.split()[0] for line in listing.splitlines()] == [f.name for f in FORMATS]
    code, records, err = run_command(Parse, ["-q", "--format", "sarif"], stdin=GOOD)
    assert code == 0 and len(records) == 6 and all(schema_error("finding/1", r) is None for r in records)
    assert len({f.name for f in FORMATS}) == len(FORMATS)



def test_a_refused_zip_member_does_not_cost_the_others(tmp_path):
    (tmp_path / "a.zip").write_bytes(_zip({"../evil.sarif": GOOD, "z/good.sarif": GOOD}))
    rejects = tmp_path / "rejects.jsonl"
    code, records, err = run_command(Parse, ["-q", str(tmp_path / "a.zip"), "--rejects", str(rejects)])
    assert code == 0 and len(records) == 6 and records[0]["source"]["file"].endswith("a.zip!z/good.sarif")
    assert "escapes the archive" in rejects.read_text()
