"""secai.files: atomic writes, folders built aside, the leftovers of killed runs, state files and locks,
and the one zip policy."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from secai.errors import InputError
from secai.files import (AtomicOutput, building, extract_zip, read_state, remove_stale, try_lock, write_atomic,
                         write_state, zip_member_problem)

ROOT = Path(__file__).resolve().parents[1]


def hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


# ---------------------------------------------------------------- files written whole

@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_the_final_files_mode_follows_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        with AtomicOutput(tmp_path / "out.jsonl") as fh:
            fh.write(b"x\n")
        write_atomic(tmp_path / "state.json", "{}")
    finally:
        os.umask(old)
    assert (tmp_path / "out.jsonl").stat().st_mode & 0o777 == mode
    assert (tmp_path / "state.json").stat().st_mode & 0o777 == mode


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    out = tmp_path / "out.jsonl"
    out.write_bytes(b"old\n")
    with pytest.raises(ValueError), AtomicOutput(out) as fh:
        fh.write(b"half of the new")
        raise ValueError("the command failed")
    assert out.read_bytes() == b"old\n" and hidden(tmp_path) == []


def test_a_failed_rename_removes_the_temporary(tmp_path, monkeypatch):
    def boom(*a):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        write_atomic(tmp_path / "out.json", b"{}")
    assert list(tmp_path.iterdir()) == []


def killed_mid_write(target: Path, writes: str) -> str:
    """Run `writes` (Python that writes `target`, given as sys.argv[1]) in a process, kill -9 it
    while it holds its temporary, and return that temporary's name. While the writer lives, its
    temporary is never taken for a leftover."""
    writer = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom secai.files import AtomicOutput, building\n" + writes
         + "\n    print('writing', flush=True)\n    time.sleep(60)\n", str(target)],
        stdout=subprocess.PIPE, cwd=ROOT)
    try:
        assert writer.stdout.readline() == b"writing\n"
        [left] = hidden(target.parent)
        assert remove_stale(target) == [] and hidden(target.parent) == [left]
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=30)
    finally:
        writer.kill()
        writer.stdout.close()
    assert hidden(target.parent) == [left] and not target.exists()  # what a kill leaves behind
    return left


def test_a_killed_writers_temporary_is_removed_by_the_next_write(tmp_path):
    out = tmp_path / "findings.jsonl"
    left = killed_mid_write(out, "with AtomicOutput(sys.argv[1]) as fh:\n    fh.write(b'x' * 1_000_000); fh.flush()")
    assert left.startswith(".findings.jsonl.") and left.endswith(".tmp")
    write_atomic(out, b"done\n")
    assert hidden(tmp_path) == [] and out.read_bytes() == b"done\n"


def test_planted_stale_temporaries_of_the_target_go_and_others_stay(tmp_path):
    out = tmp_path / "analyses.jsonl"
    stale = [".analyses.jsonl.k2j4_x9q.tmp",          # tempfile.mkstemp's, from earlier versions
             ".analyses.jsonl.0123456789ab.tmp",      # this module's
             ".analyses.jsonl.tmp",                   # the fixed name some writers used
             ".analyses.jsonl.tmp-4242-0123abcd",     # a folder built aside
             ".analyses.jsonl.old-4242-89abcdef"]     # a folder moved aside
    keep = [".analyses.jsonl.json.k2j4_x9q.tmp",     # another target's
            ".analyses.jsonl.notes", "analyses.jsonl.k2j4_x9q.tmp", ".other.k2j4_x9q.tmp"]
    for name in stale + keep:
        (tmp_path / name).mkdir() if "-" in name.rsplit(".", 1)[-1] else (tmp_path / name).write_bytes(b"x" * 100)
    (tmp_path / ".analyses.jsonl.tmp-4242-0123abcd" / "half.bin").write_bytes(b"x")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / ".analyses.jsonl.tmp-1-aaaaaaaa").symlink_to(tmp_path / "elsewhere")  # never followed
    with AtomicOutput(out) as fh:
        fh.write(b"{}\n")
    assert hidden(tmp_path) == sorted(keep[:2] + [".analyses.jsonl.tmp-1-aaaaaaaa", ".other.k2j4_x9q.tmp"])
    assert (tmp_path / "elsewhere").is_dir() and (tmp_path / "analyses.jsonl.k2j4_x9q.tmp").is_file()


def test_stdout_is_written_directly(capsysbinary):
    with AtomicOutput("-") as fh:
        fh.write(b"line\n")
    assert capsysbinary.readouterr().out == b"line\n"


# ---------------------------------------------------------------- folders built aside

def test_a_folder_appears_whole_or_not_at_all(tmp_path):
    out = tmp_path / "dataset"
    with building(out) as tmp:
        (tmp / "train.jsonl").write_text("a\n")
    with pytest.raises(RuntimeError), building(out) as tmp:
        (tmp / "train.jsonl").write_text("half")
        raise RuntimeError("failed mid-build")
    assert (out / "train.jsonl").read_text() == "a\n" and hidden(tmp_path) == []
    with building(out) as tmp:
        (tmp / "valid.jsonl").write_text("b\n")
    assert sorted(p.name for p in out.iterdir()) == ["valid.jsonl"] and hidden(tmp_path) == []


def test_a_killed_builders_folder_is_removed_by_the_next_build_and_a_live_one_is_not(tmp_path):
    out = tmp_path / "index"
    left = killed_mid_write(out, "with building(sys.argv[1]) as tmp:\n    (tmp / 'index.faiss').write_bytes(b'x' * 1000)")
    assert left.startswith(".index.tmp-")
    with building(out) as tmp:
        (tmp / "manifest.json").write_text("{}")
    assert hidden(tmp_path) == [] and (out / "manifest.json").is_file()


# ---------------------------------------------------------------- state files and locks

@pytest.mark.parametrize("content", [b"{\"repos\": {", b"", b"\xff\xfe", b"[1, 2]", b"{\"repos\": []}"])
def test_a_corrupt_state_file_is_a_one_line_error_naming_it_never_a_reset(tmp_path, content):
    state = tmp_path / "fetch.json"
    state.write_bytes(content)
    with pytest.raises(InputError) as err:
        read_state(state, {"version": 1, "repos": {}}, {"repos": dict})
    assert str(err.value).startswith(f"{state}: corrupt state file") and "\n" not in str(err.value)
    assert state.read_bytes() == content  # left as it was, for the user to look at


def test_state_round_trip_and_a_missing_file_is_a_fresh_copy(tmp_path):
    empty = {"repos": {}}
    fresh = read_state(tmp_path / "none.json", empty)
    fresh["repos"]["x"] = 1
    assert empty == {"repos": {}}
    write_state(tmp_path / "s" / "state.json", {"b": 1, "a": [1]})
    assert (tmp_path / "s" / "state.json").read_text() == '{\n  "a": [\n    1\n  ],\n  "b": 1\n}\n'
    assert read_state(tmp_path / "s" / "state.json", {}) == {"a": [1], "b": 1}


def test_try_lock_admits_one_holder(tmp_path):
    lock = tmp_path / "state" / "daemon.lock"
    fd = try_lock(lock)
    assert fd is not None and try_lock(lock) is None
    os.close(fd)
    fd = try_lock(lock)
    assert fd is not None
    os.close(fd)


# ---------------------------------------------------------------- one zip policy

def _zip(members: dict[str, bytes], symlinks=(), encrypted=()) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            info = zipfile.ZipInfo(name)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o100644 << 16
            zf.writestr(info, data)
        for name in symlinks:
            info = zipfile.ZipInfo(name)
            info.external_attr = 0o120777 << 16
            zf.writestr(info, "/etc/passwd")
    data = bytearray(buf.getvalue())
    # zipfile writes no encrypted member: set the flag in its local and central headers
    # (signature, offset of the flags, of the name's length, of the name)
    for sig, flags, size, at in ((b"PK\x03\x04", 6, 26, 30), (b"PK\x01\x02", 8, 28, 46)):
        i = data.find(sig)
        while i >= 0:
            n = int.from_bytes(data[i + size:i + size + 2], "little")
            if data[i + at:i + at + n].decode() in encrypted:
                data[i + flags] |= 0x1
            i = data.find(sig, i + 4)
    return bytes(data)


MEMBERS = {"ok.json": b"{}", "../up.json": b"{}", "/abs.json": b"{}", "C:/win.json": b"{}",
           "sub\\..\\..\\back.json": b"{}", "big.json": b"[" + b" " * 3000 + b"]",
           "bomb.json": b"[" + b" " * (11 * 2**20) + b"]", "secret.json": b"{}"}
REASONS = {"../up.json": "path escapes the archive", "/abs.json": "path escapes the archive",
           "C:/win.json": "path escapes the archive", "sub\\..\\..\\back.json": "path escapes the archive",
           "big.json": "expands to 2.9 KB, over the 2.0 KB limit (zip bomb?)",
           "bomb.json": "expands to 11.0 MB, over the 2.0 KB limit (zip bomb?)",
           "link.json": "a symlink", "secret.json": "encrypted"}


def test_one_policy_judges_every_member():
    zf = zipfile.ZipFile(io.BytesIO(_zip(MEMBERS, symlinks=["link.json"], encrypted=["secret.json"])))
    got = {i.filename: zip_member_problem(i, max_member=2048, max_ratio=200) for i in zf.infolist()}
    assert got == {"ok.json": None, **REASONS}
    bomb = zf.getinfo("bomb.json")
    assert zip_member_problem(bomb, max_member=2**30, max_ratio=200) == "compression ratio over 200:1 (zip bomb?)"
    assert zip_member_problem(zf.getinfo("ok.json"), max_member=2048, max_ratio=200, total=99,
                              max_total=100) == "the archive expands past 100 bytes"


def test_fetch_and_parse_refuse_the_same_members_for_the_same_reasons(tmp_path):
    """secai-fetch's unzip and secai-parse's zip reading use the one policy."""
    data = _zip({k: v for k, v in MEMBERS.items() if k != "bomb.json"}, symlinks=["link.json"],
                encrypted=["secret.json"])
    (tmp_path / "a.zip").write_bytes(data)
    info = extract_zip(tmp_path / "a.zip", tmp_path / "out", max_member=2048, max_ratio=200, max_total=2**20)
    fetched = {s["name"]: s["reason"] for s in info["skipped"]}
    assert fetched == {k: v for k, v in REASONS.items() if k != "bomb.json"}
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["ok.json"]
    parse = subprocess.run([ROOT / "bin" / "secai-parse", tmp_path / "a.zip", "--max-file-mb",
                            str(2048 / 2**20), "--rejects", tmp_path / "rejects.jsonl"], capture_output=True, text=True)
    err = parse.stderr
    assert parse.returncode == 0, err
    for name, reason in fetched.items():
        assert f"a.zip!{name}: zip member refused: {reason}" in err, (name, err)


def test_a_parse_removes_what_a_killed_parse_left_beside_its_output(tmp_path):
    out = tmp_path / "findings.jsonl"
    left = tmp_path / ".findings.jsonl.a8x_k2q9.tmp"  # as a killed parse left it (mkstemp's name, 0600)
    left.write_bytes(b"x" * 4096)
    parse = subprocess.run([ROOT / "bin" / "secai-parse", "-q", ROOT / "examples" / "artifacts", "-o", out],
                           capture_output=True, text=True)
    assert parse.returncode == 0, parse.stderr
    assert not left.exists() and hidden(tmp_path) == [] and out.stat().st_size > 0


def test_fetch_and_push_read_a_corrupt_state_alike(tmp_path):
    from secai.ops import github
    from secai.publishing import hub

    state = tmp_path / "state.json"
    state.write_bytes(b'{"repos": {"o/r": {"runs": {')  # cut short by a full disk
    for load in (github.load_state, hub.load_state):
        with pytest.raises(InputError, match="corrupt state file, not JSON"):
            load(state)
    state.write_bytes(b"[]")
    for load in (github.load_state, hub.load_state):
        with pytest.raises(InputError, match="corrupt state file, not the JSON object"):
            load(state)
