"""secai-parse inputs: files, directories, zips, stdin; bad input of every kind; dedup; determinism."""

from __future__ import annotations

import io
import zipfile

import orjson
import pytest
from conftest import FIXTURES, run_command

from secai.records import schema_error
from secai.commands.parse import Parse

SPEC = FIXTURES / "parse" / "sarif" / "spec-features.sarif"
GOOD = SPEC.read_bytes()


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
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
    rejected = [orjson.loads(line) for line in rejects.read_bytes().splitlines()]
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
    assert len(records) == 6 and records[0]["source"]["file"] == "artifact.zip!reports/codeql.sarif"


@pytest.mark.parametrize("stdin", [b"", b"  \n\n "])
def test_empty_stdin_is_no_report_like_in_every_filter(stdin):
    """`secai-parse < /dev/null` writes nothing and exits 0, as analyze, narrate and sarif do on empty
    input; an empty file named as a report is still an error (BAD above)."""
    code, records, err = run_command(Parse, [], stdin=stdin)
    assert (code, records) == (0, []) and "error" not in err


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


# ---------------------------------------------------------------- one bad record, report or file costs only itself

def _semgrep(*paths) -> bytes:
    return orjson.dumps({"version": "1.50.0", "errors": [], "results": [
        {"check_id": f"python.lang.rule-{i}", "extra": {"message": "m", "severity": "ERROR"},
         "start": {"line": i + 1}, **({"path": p} if p is not None else {})} for i, p in enumerate(paths)]})


def _checkov(*paths) -> bytes:
    return orjson.dumps({"check_type": "terraform", "results": {"failed_checks": [
        {"check_id": f"CKV_AWS_{i}", "check_name": "n", "file_path": p, "file_line_range": [i + 1, i + 2],
         "resource": "aws_s3_bucket.b"} for i, p in enumerate(paths)]}})


INVALID_FINDINGS = {  # report, the findings that survive, what the reject says
    "semgrep-no-path.json": (_semgrep("a.py", None, "c.py"), 2, "semgrep-json: finding 2 (python.lang.rule-1)"),
    "checkov-null-path.json": (_checkov("/main.tf", None, "/b.tf"), 2, "checkov-json: finding 2 (CKV_AWS_1)"),
}


@pytest.mark.parametrize("name", sorted(INVALID_FINDINGS))
def test_a_finding_that_fails_its_schema_is_a_reject_of_that_finding_alone(tmp_path, name):
    data, survivors, reason = INVALID_FINDINGS[name]
    (tmp_path / name).write_bytes(data)
    (tmp_path / "good.sarif").write_bytes(GOOD)
    rejects = tmp_path / "rejects.jsonl"
    code, records, err = run_command(Parse, ["-q", str(tmp_path / name), str(tmp_path / "good.sarif"),
                                             "--rejects", str(rejects)])
    assert code == 0, err
    assert len(records) == 6 + survivors and "Traceback" not in err and "RuntimeError" not in err
    [rejected] = [orjson.loads(line) for line in rejects.read_bytes().splitlines()]
    assert rejected["file"] == str(tmp_path / name)
    assert rejected["reason"].startswith(reason) and "is not a valid finding/1" in rejected["reason"]
    assert "location" in rejected["reason"] and "path" in rejected["reason"]
    code, records, err = run_command(Parse, [str(tmp_path / name)])  # without --rejects: exit 1, one line
    assert code == 1 and records == []
    line = one_error_line(err)
    assert line.startswith(f"secai-parse: error: {tmp_path / name}: {reason}")


def test_a_utf16_bom_with_invalid_utf16_is_a_reject_naming_the_file(tmp_path):
    bad = tmp_path / "powershell.json"
    bad.write_bytes(b"\xff\xfe" + '{"runs": ['.encode("utf-16-le") + b"\x00\xd8\x41\x00")  # a lone high surrogate
    (tmp_path / "good.sarif").write_bytes(GOOD)
    rejects = tmp_path / "rejects.jsonl"
    code, records, err = run_command(Parse, ["-q", str(bad), str(tmp_path / "good.sarif"), "--rejects", str(rejects)])
    assert code == 0 and len(records) == 6, err
    [rejected] = [orjson.loads(line) for line in rejects.read_bytes().splitlines()]
    assert rejected["file"] == str(bad) and "invalid UTF-16" in rejected["reason"]
    code, _, err = run_command(Parse, [str(bad)])
    assert code == 1 and "invalid UTF-16" in one_error_line(err) and str(bad) in err


def test_an_exception_inside_a_parser_is_a_reject_of_that_report(tmp_path, monkeypatch):
    import dataclasses

    from secai.parsing import formats

    def broken(doc):
        yield from semgrep.parse(doc)
        raise ZeroDivisionError("a bug in the parser")

    semgrep = formats.BY_NAME["semgrep-json"]
    monkeypatch.setattr(formats, "FORMATS", [dataclasses.replace(f, parse=broken) if f is semgrep else f
                                             for f in formats.FORMATS])
    (tmp_path / "semgrep.json").write_bytes(_semgrep("a.py", "b.py"))
    (tmp_path / "good.sarif").write_bytes(GOOD)
    rejects = tmp_path / "rejects.jsonl"
    code, records, err = run_command(Parse, ["-q", str(tmp_path), "--rejects", str(rejects)])
    assert code == 0 and len(records) == 6, err
    assert all(r["tool"] != "semgrep" for r in records)  # the report is rejected whole
    [rejected] = [orjson.loads(line) for line in rejects.read_bytes().splitlines()]
    assert rejected["file"] == str(tmp_path / "semgrep.json")
    assert "semgrep-json: unexpected structure" in rejected["reason"] and "a bug in the parser" in rejected["reason"]


# ---------------------------------------------------------------- what a walk reads

def _walk_rejects(tmp_path, root):
    rejects = tmp_path / "rejects.jsonl"
    code, records, err = run_command(Parse, ["-q", str(root), "--rejects", str(rejects)])
    assert code == 0, err
    return records, {r["file"]: r["reason"] for r in map(orjson.loads, rejects.read_bytes().splitlines())}


def test_a_fifo_in_a_walked_directory_is_refused_without_being_opened(tmp_path):
    import os
    import threading

    root = tmp_path / "artifacts"
    root.mkdir()
    (root / "good.sarif").write_bytes(GOOD)
    fifo = root / "pipe.sarif"
    os.mkfifo(fifo)

    def unblock():  # were the FIFO opened for reading, this writer would end the wait with a report
        try:
            fd = os.open(fifo, os.O_WRONLY)
            os.write(fd, GOOD.replace(b"py/sql-injection", b"py/from-the-fifo"))
            os.close(fd)
        except OSError:
            pass

    writer = threading.Timer(10, unblock)
    writer.daemon = True
    writer.start()
    try:
        records, rejected = _walk_rejects(tmp_path, root)
    finally:
        writer.cancel()
    assert len(records) == 6 and not any("from-the-fifo" in r["rule_id"] for r in records)
    assert rejected == {str(fifo): "a FIFO, not a regular file (refused)"}


def test_a_socket_in_a_walked_directory_is_refused(tmp_path):
    import socket

    root = tmp_path / "a"
    root.mkdir()
    (root / "good.sarif").write_bytes(GOOD)
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(root / "s.sock"))
        records, rejected = _walk_rejects(tmp_path, root)
    finally:
        sock.close()
    assert len(records) == 6 and rejected == {str(root / "s.sock"): "a socket, not a regular file (refused)"}


def test_symlinks_out_of_the_walked_tree_are_refused_and_those_inside_followed_once(tmp_path):
    outside = tmp_path / "outside"
    (outside / "dir").mkdir(parents=True)
    (outside / "secret.sarif").write_bytes(GOOD)
    (outside / "dir" / "r.sarif").write_bytes(GOOD)
    root = tmp_path / "artifacts"
    (root / "real").mkdir(parents=True)
    (root / "real" / "r.sarif").write_bytes(GOOD)
    (root / "out-file.sarif").symlink_to(outside / "secret.sarif")
    (root / "out-dir").symlink_to(outside / "dir", target_is_directory=True)
    (root / "in-file.sarif").symlink_to(root / "real" / "r.sarif")
    (root / "in-dir").symlink_to(root / "real", target_is_directory=True)
    (root / "dangling.sarif").symlink_to(root / "nowhere.sarif")
    records, rejected = _walk_rejects(tmp_path, root)
    assert rejected == {
        str(root / "out-file.sarif"): "symlink to a file outside the walked tree (refused)",
        str(root / "out-dir"): "symlink to a directory outside the walked tree (refused)",
        str(root / "dangling.sarif"): "No such file or directory",
    }
    assert len(records) == 6 and all(r["occurrences"] == 2 for r in records)  # real/r.sarif and in-file.sarif
    assert {r["source"]["file"] for r in records} == {"in-file.sarif"}  # relative to the walked root


def test_a_symlink_named_on_the_command_line_is_followed(tmp_path):
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "r.sarif").write_bytes(GOOD)
    (tmp_path / "link.sarif").symlink_to(tmp_path / "elsewhere" / "r.sarif")
    (tmp_path / "linkdir").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    for path in ("link.sarif", "linkdir"):
        code, records, err = run_command(Parse, ["-q", str(tmp_path / path)])
        assert code == 0 and len(records) == 6, err


def test_a_fifo_named_on_the_command_line_is_read(tmp_path):
    import os
    import threading

    fifo = tmp_path / "report"
    os.mkfifo(fifo)

    def write():
        with open(fifo, "wb") as fh:
            fh.write(GOOD)

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    code, records, err = run_command(Parse, ["-q", str(fifo)])
    writer.join(5)
    assert code == 0 and len(records) == 6, err


# ---------------------------------------------------------------- leading whitespace

@pytest.mark.parametrize("pad", [b"\n" * 100, b" \t\r\n" * 40, b"\xef\xbb\xbf" + b"\n" * 100])
@pytest.mark.parametrize("case", ["sarif/spec-features.sarif", "zap-xml/notes-app-scan.xml",
                                  "trufflehog-v3-jsonl/git-fs-docker.jsonl"])
def test_leading_whitespace_is_not_an_empty_file(tmp_path, pad, case):
    source = FIXTURES / "parse" / case
    data = source.read_bytes()
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    (tmp_path / source.name).write_bytes(pad + data)
    expected = run_command(Parse, ["-q", str(source)])[1]
    code, records, err = run_command(Parse, ["-q", str(tmp_path / source.name)])
    assert code == 0, err
    assert [r["id"] for r in records] == [r["id"] for r in expected] and records


def test_an_xml_error_after_leading_blank_lines_names_its_real_line(tmp_path):
    (tmp_path / "broken.xml").write_bytes(b"\n" * 10 + b"<OWASPZAPReport>\n<site>\n")
    code, _, err = run_command(Parse, [str(tmp_path / "broken.xml")])
    assert code == 1 and one_error_line(err).startswith(f"secai-parse: error: {tmp_path / 'broken.xml'}:13: invalid XML")


def test_a_zip_member_that_fails_to_extract_costs_only_itself(tmp_path):
    data = bytearray(_zip({"a/broken.sarif": GOOD, "b/good.sarif": GOOD}))
    start = data.index(b"a/broken.sarif") + len("a/broken.sarif")  # the first member's compressed bytes
    data[start + 40:start + 80] = bytes(40)
    (tmp_path / "artifact.zip").write_bytes(bytes(data))
    rejects = tmp_path / "rejects.jsonl"
    code, records, err = run_command(Parse, ["-q", str(tmp_path / "artifact.zip"), "--rejects", str(rejects)])
    assert code == 0 and len(records) == 6, err
    assert {r["source"]["file"] for r in records} == {"artifact.zip!b/good.sarif"}
    [rejected] = [orjson.loads(line) for line in rejects.read_bytes().splitlines()]
    assert rejected["file"] == f"{tmp_path}/artifact.zip!a/broken.sarif" and "refused" in rejected["reason"]
