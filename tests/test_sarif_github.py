"""secai-sarif for GitHub code scanning, as GitHub documents it ("SARIF support for code scanning")
and as its upload action (github/codeql-action) treats a log: paths relative to the repository
root, the action's primaryLocationLineHash, rules with a name, one run per original scanner (secai
as its extension), and a log secai-parse reads back with the original scanner as the tool."""

from __future__ import annotations

import random
import subprocess
from collections import Counter

import orjson
import pytest
from conftest import ROOT, run_command

from secai import __version__
from secai.commands.analyze import Analyze
from secai.commands.parse import Parse
from secai.commands.sarif import Sarif
from secai.publishing.linehash import BLOCK, END, file_line_hashes, line_hashes
from secai.publishing.sarif import LINE_HASH, build_log, rule_name
from secai.records import dumps

DEMO = ROOT / "examples" / "demo-app"


# ---------------------------------------------------------------- the line hash

# The upload action's own test vectors (github/codeql-action, src/fingerprints.test.ts and
# src/testdata/fingerprinting.expected.sarif): text, then the hash of each line in order.
VECTORS = [
    ("", ["c129715d7a2bc9a3:1"]),
    (" a\nb\n  \t\tc\n d", ["271789c17abda88f:1", "54703d4cd895b18:1", "180aee12dab6264:1", "a23a3dc5e078b07b:1"]),
    (" hello; \t\nworld!!!\n\n\n  \t\tGreetings\n End",
     ["8b7cf3e952e7aeb2:1", "b1ae1287ec4718d9:1", "bff680108adb0fcc:1", "c6805c5e1288b612:1",
      "b86d3392aea1be30:1", "e6ceba753e1a442:1"]),
    *[(text, ["e9496ae3ebfced30:1", "fb7c023a8b9ccb3f:1", "ce8ba1a563dcdaca:1", "e20e36e16fcb0cc8:1",
              "b3edc88f2938467e:1", "c8e28b0b4002a3a0:1", "c129715d7a2bc9a3:1"])
      for text in (" hello; \t\nworld!!!\n\n\n  \t\tGreetings\n End\n",
                   " hello; \t\nworld!!!\r\r\r  \t\tGreetings\r End\r",
                   " hello; \t\r\nworld!!!\r\n\r\n\r\n  \t\tGreetings\r\n End\r\n",
                   " hello; \t\nworld!!!\r\n\n\r  \t\tGreetings\r End\r\n")],
    ("Lorem ipsum dolor sit amet.\n" * 10,
     [*(f"a7f2ff13bc495cf2:{n}" for n in range(1, 7)), "a7f2ff1481e87703:1", "a9cf91f7bbf1862b:1",
      "55ec222b86bcae53:1", "cc97dc7b1d7d8f7b:1", "c129715d7a2bc9a3:1"]),
]


@pytest.mark.parametrize("text,expected", VECTORS)
def test_line_hashes_are_the_upload_actions(text, expected):
    assert line_hashes(text) == {n: h for n, h in enumerate(expected, 1)}


def test_line_hashes_of_the_actions_test_files():
    assert line_hashes("var a = 0;\nvar b = 0;\nvar c = 0;\nvar d = 0;\n", [1]) == {1: "5e4d5a9cf1294ad9:1"}
    assert line_hashes("var foo = 0;\nvar bar = 0;\nvar baz = 0;\nvar qux = 0;\n", [2]) == {2: "f7592a95a9381ac0:1"}


def by_definition(text: str) -> dict[int, str]:
    """The hashes as the algorithm defines them, computed without a rolling window: a line's hash is
    the polynomial Σ u_i·37^(99-i) mod 2^64 of the 100 kept UTF-16 code units from its start
    (spaces and tabs dropped, CR/CRLF as LF, then 65535 and zeros after the end); `:n` counts equal
    hashes so far."""
    raw = text.encode("utf-16-le", "surrogatepass")
    units = [int.from_bytes(raw[i:i + 2], "little") for i in range(0, len(raw), 2)]
    kept, prev_cr = [], False
    for c in units:
        if c in (0x20, 0x09) or (prev_cr and c == 0x0A):
            prev_cr = False
            continue
        prev_cr = c == 0x0D
        kept.append(0x0A if c == 0x0D else c)
    kept.append(END)
    starts = [0] + [i + 1 for i, c in enumerate(kept) if c == 0x0A]
    padded = kept + [0] * BLOCK
    out, seen = {}, Counter()
    for number, start in enumerate(starts, 1):
        value = 0
        for c in padded[start:start + BLOCK]:
            value = (value * 37 + c) % (1 << 64)
        seen[value] += 1
        out[number] = f"{value:x}:{seen[value]}"
    return out


def test_line_hashes_follow_the_definition_on_any_text():
    rng = random.Random(15)
    alphabet = ["a", "Z", "0", " ", "\t", "\n", "\r", "\r\n", "é", "\U0001F600", "\ufeff", "x" * 120]
    for _ in range(200):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 60)))
        full = line_hashes(text)
        assert full == by_definition(text), repr(text)
        wanted = set(rng.sample(sorted(full), min(3, len(full))))
        assert line_hashes(text, wanted) == {n: full[n] for n in wanted}


def test_a_file_that_cannot_be_read_has_no_hashes(tmp_path):
    assert file_line_hashes(tmp_path / "missing.py", [1]) == {}
    assert file_line_hashes(tmp_path, [1]) == {}
    (tmp_path / "bad.py").write_bytes(b"x = '\xff'\ny = 1\n")  # read as UTF-8 with U+FFFD, as the action does
    assert file_line_hashes(tmp_path / "bad.py", [2]) == line_hashes("x = '\ufffd'\ny = 1\n", [2])


# ---------------------------------------------------------------- the log of the demo

@pytest.fixture(scope="module")
def analyses(findings):
    code, records, err = run_command(Analyze, ["-q", "--no-cache", "--source-root", str(DEMO)],
                                     stdin=b"".join(dumps(f) for f in findings))
    assert code == 0, err
    return records


def sarif(records, *argv, cwd=None):
    code, out, err = run_command(Sarif, ["-q", *argv], stdin=b"".join(dumps(r) for r in records), raw=True, cwd=cwd)
    assert code == 0, err
    return orjson.loads(out)


def tracked_files() -> set[str]:
    return set(subprocess.run(["git", "-C", str(ROOT), "ls-files"], capture_output=True, text=True,
                              check=True).stdout.splitlines())


def test_paths_are_relative_to_the_git_root_and_name_files_of_the_repository(analyses):
    log = sarif(analyses, "--source-root", str(DEMO))  # the repository root: the git root of the source root
    results = [res for run in log["runs"] for res in run["results"]]
    assert len(results) == len(analyses)
    files = tracked_files()
    for res in results:
        location = res["locations"][0]["physicalLocation"]
        uri = location["artifactLocation"]["uri"]
        assert uri.startswith("examples/demo-app/") and uri in files and location["artifactLocation"]["uriBaseId"] == "%SRCROOT%"
        line = location["region"]["startLine"]
        assert res["partialFingerprints"][LINE_HASH] == file_line_hashes(ROOT / uri, [line])[line]
    # the same log from inside the source root, and with the repository root given
    assert sarif(analyses, cwd=DEMO) == log
    assert sarif(analyses, "--source-root", "examples/demo-app", "--repo-root", str(ROOT), cwd=ROOT) == log


def test_outside_a_git_work_tree_the_source_root_is_the_repository_root(analyses, tmp_path):
    for name in ("app.py", "Dockerfile"):
        (tmp_path / name).write_bytes((DEMO / name).read_bytes())
    log = sarif(analyses, "--source-root", str(tmp_path))
    located = {res["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]: LINE_HASH in res["partialFingerprints"]
               for run in log["runs"] for res in run["results"]}
    assert located["app.py"] and located["Dockerfile"]
    assert located["main.tf"] is False  # not in the checkout: left to the upload action


def test_a_source_root_outside_the_repository_is_a_usage_error(tmp_path):
    code, out, err = run_command(Sarif, ["--source-root", str(tmp_path), "--repo-root", str(DEMO)], raw=True)
    assert code == 2 and out == "" and "is not inside the repository root" in err and len(err.splitlines()) == 1


def test_one_run_per_scanner_with_secai_as_its_extension(analyses):
    log = sarif(analyses, "--source-root", str(DEMO), "--scanner", "bandit", "--scanner", "Trivy")
    tools = Counter(a["finding"]["tool"] for a in analyses)
    runs = {run["tool"]["driver"]["name"]: run for run in log["runs"]}
    assert list(runs) == sorted({*tools, "trivy"})
    assert runs["trivy"]["results"] == [] and runs["trivy"]["tool"]["driver"]["rules"] == []  # ran, found nothing
    for name, run in runs.items():
        assert len(run["results"]) == tools[name]
        assert run["tool"]["extensions"] == [{"name": "secai", "version": __version__, "semanticVersion": __version__}]
        assert run["automationDetails"] == {"id": "secai/"}
        versions = {a["finding"].get("tool_version") for a in analyses if a["finding"]["tool"] == name}
        assert run["tool"]["driver"].get("version") in versions | {None}
    # GitHub takes one analysis per tool and category: the upload action refuses two runs with one key
    keys = [(r["tool"]["driver"]["name"], r["tool"]["driver"].get("version"), r["automationDetails"]["id"])
            for r in log["runs"]]
    assert len(set(keys)) == len(keys)


def test_rules_have_a_name_github_shows(analyses):
    log = sarif(analyses)
    names = {(run["tool"]["driver"]["name"], rule["id"]): rule["name"] for run in log["runs"]
             for rule in run["tool"]["driver"]["rules"]}
    assert names["bandit", "B608"] == "HardcodedSqlExpressions"
    assert names["checkov", "CKV_DOCKER_2"] == "EnsureThatHEALTHCHECKInstructionsHaveBeenAddedToContainerImages"
    assert all(name.isalnum() and name.isascii() and 0 < len(name) <= 255 for name in names.values())
    assert rule_name("CKV_X_1", "—") == "CKVX1" and len(rule_name("r", "word " * 100)) == 255


def test_secai_parse_reads_the_log_back_with_the_original_scanner(analyses, tmp_path):
    log = sarif(analyses, "--source-root", str(DEMO))
    code, back, err = run_command(Parse, ["-q"], stdin=orjson.dumps(log))
    assert code == 0, err

    def key(f, prefix=""):
        loc = f["location"]
        return (prefix + loc["path"], loc["start_line"], f["rule_id"])

    original = {key(a["finding"], "examples/demo-app/"): a["finding"] for a in analyses}
    assert len(back) == len(original)
    for f in back:
        first = original[key(f)]
        assert (f["tool"], f.get("tool_version"), f["category"], f["severity"]) == \
               (first["tool"], first.get("tool_version"), first["category"], first["severity"])


def test_a_one_run_log_of_secai_0_1_reads_back_with_its_scanner(analyses):
    """Before one run per scanner, secai wrote one run with driver secai and the scanner as a property."""
    sample = [next(a for a in analyses if a["finding"]["tool"] == tool) for tool in ("semgrep", "bandit", "checkov")]
    log, _ = build_log(sample)
    rules, results = [], []
    for run in log["runs"]:  # merged into one run, as secai 0.1 wrote it
        for result in run["results"]:
            result["ruleIndex"] += len(rules)
        rules += run["tool"]["driver"]["rules"]
        results += run["results"]
    log["runs"] = [{**log["runs"][0], "results": results,
                    "tool": {"driver": {"name": "secai", "version": "0.1.0", "rules": rules}}}]
    code, back, err = run_command(Parse, ["-q"], stdin=orjson.dumps(log))
    assert code == 0, err
    assert sorted((f["rule_id"], f["tool"], f["category"]) for f in back) == sorted(
        (a["finding"]["rule_id"], a["finding"]["tool"], a["finding"]["category"]) for a in sample)


def test_a_missing_source_root_still_maps_its_paths_by_name(analyses, tmp_path):
    """make sarif in a tree without the demo (SOURCE_ROOT names a folder that is not there): the paths
    still say where the files belong, with no line hash (there is nothing to read)."""
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    log = sarif(analyses[:3], "--source-root", "services/gone", cwd=tmp_path)
    [result, *_] = [res for run in log["runs"] for res in run["results"]]
    assert result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == \
        "services/gone/" + analyses[0]["finding"]["location"]["path"]
    assert LINE_HASH not in result["partialFingerprints"]
