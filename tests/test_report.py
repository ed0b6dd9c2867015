"""secai-report: the facts of a build, its three formats, escaping, missing parts, and the page in a
real browser (headless Chromium, Debian's package, driven through playwright's driver).

The build is made in-process from two of the shipped reports (bandit and semgrep on the demo app:
code context, fixes, code-fix examples) as `make all` makes it: analyses, both stages' examples
(fixes verified when the scanners are installed), both datasets, stage 1 then stage 2 on the tiny
test model for a few steps, their evaluation, quality.json and summary.json."""

from __future__ import annotations

import contextlib
import functools
import io
import os
import shutil
import subprocess
from pathlib import Path

import orjson
import pytest

from conftest import ROOT, run_command
from secai import config
from secai.commands.analyze import Analyze
from secai.commands.lora import Lora
from secai.commands.narrate import Narrate
from secai.commands.parse import Parse
from secai.commands.report import Report
from secai.commands.split import Split
from secai.publishing.report import facts as report_facts
from secai.publishing.report import plain
from secai.publishing.report.chart import ticks

DEMO = ROOT / "examples" / "demo-app"
REPORTS = ["bandit.json", "semgrep.json"]
SCANNERS = ROOT / ".scanners" / "bin"
FAST = ["--iters", "4", "--batch-size", "2", "--steps-per-eval", "2", "--steps-per-report", "1", "-q"]
HOSTILE = '<script>document.title="pwned"</script><img src=x onerror=alert(1)>'


def ok(command, argv):
    code, out, err = run_command(command, argv, raw=True)
    assert code == 0, err
    return out


def data_build(root: Path, verify: bool) -> Path:
    """analyses, examples and datasets of the two reports in root/build (no training)."""
    build = root / "build"
    (build / "training").mkdir(parents=True)
    ok(Parse, ["-q", *(str(ROOT / "examples" / "artifacts" / r) for r in REPORTS), "-o", str(build / "findings.jsonl")])
    ok(Analyze, ["-q", "--no-cache", "--source-root", str(DEMO), "--semgrep-rules", str(ROOT / "examples" / "semgrep-rules"),
                 str(build / "findings.jsonl"), "-o", str(build / "analyses.jsonl")])
    analyses = str(build / "analyses.jsonl")
    ok(Narrate, ["-q", "--stage", "analysis", analyses, "-o", str(build / "training" / "analysis.jsonl")])
    checks = (["--verify-fixes", "--source-root", str(DEMO), "--semgrep-config", str(ROOT / "examples" / "semgrep-rules"),
               "--scanners-dir", str(SCANNERS), "--verify-report", str(build / "training" / "codefix-verify.json")]
              if verify else [])
    ok(Narrate, ["-q", "--stage", "codefix", analyses, "-o", str(build / "training" / "codefix.jsonl"), *checks])
    ok(Split, ["-q", str(build / "training" / "analysis.jsonl"), "-o", str(build / "datasets" / "analysis")])
    ok(Split, ["-q", str(build / "training" / "codefix.jsonl"), "-o", str(build / "datasets" / "codefix"),
               "--replay", str(build / "datasets" / "analysis")])
    return build


def finish(build: Path) -> None:
    """quality.json and summary.json, as make writes them."""
    from secai.dataset import quality
    from secai.ops import status

    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        assert quality.main(["--build", str(build), "-o", str(build / "quality.json"), "-q"]) == 0
        assert status.main(["--build", str(build), "--write", str(build / "summary.json")]) == 0


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    old = os.environ.get("SECAI_MODELS_DIR")
    os.environ["SECAI_MODELS_DIR"] = str(d)
    config.load.cache_clear()
    yield d
    if old is None:
        os.environ.pop("SECAI_MODELS_DIR", None)
    else:
        os.environ["SECAI_MODELS_DIR"] = old
    config.load.cache_clear()


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_model, models_dir) -> Path:
    """The example build with both stages trained and evaluated (the scanners verify when installed)."""
    build = data_build(tmp_path_factory.mktemp("report"), verify=(SCANNERS / "bandit").exists())
    ft = build / "finetune"
    ft.mkdir()
    for stage, extra in (("analysis", []), ("codefix", ["--from-adapter", str(ft / "analysis.json")])):
        meta = ok(Lora, ["train", "--stage", stage, "--data", str(build / "datasets" / stage), "--base-model", str(tiny_model),
                         "--name", f"report-{stage}", *extra, *FAST])
        (ft / f"{stage}.json").write_text(meta)
        ok(Lora, ["eval", "--adapter", str(ft / f"{stage}.json"), "-o", str(ft / f"eval-{stage}.json"),
                  "--samples", "1", "--max-tokens", "4", "-q"])
    finish(build)
    return build


@pytest.fixture(scope="module")
def untrained(tmp_path_factory) -> Path:
    """The same reports with no training and no verification (SKIP_FINETUNE=1, VERIFY off)."""
    build = data_build(tmp_path_factory.mktemp("report-data"), verify=False)
    finish(build)
    return build


def analyses(build: Path) -> list[dict]:
    return [orjson.loads(line) for line in (build / "analyses.jsonl").read_bytes().splitlines() if line.strip()]


def render(build: Path, fmt: str = "html") -> str:
    return ok(Report, ["-q", "--build", str(build), "--format", fmt])


# ---------------------------------------------------------------- facts

def test_facts_of_a_trained_build(trained):
    f = report_facts.gather(trained)
    records = analyses(trained)
    assert [x["id"] for x in f["findings"]] and {x["id"] for x in f["findings"]} == {r["id"] for r in records}
    c = f["counts"]
    assert c["findings"] == len(records) and sum(c["severity"].values()) == sum(c["tool"].values()) == len(records)
    assert set(c["tool"]) == {"bandit", "semgrep"} and set(c["category"]) == {"sast"}
    severities = [x["severity"] for x in f["findings"]]
    assert severities == sorted(severities, key=["critical", "high", "medium", "low", "info"].index)  # most severe first
    with_fix = [x for x in f["findings"] if x["fix"]]
    assert with_fix and c["fixes"] == len(with_fix)
    # a placed fix is a diff of the code context with the file's own line numbers
    placed = [x for x in with_fix if x["fix"]["placed"]]
    assert placed
    for x in placed:
        rows = x["fix"]["rows"]
        assert rows[0][0] == "hunk" and {"del", "add"} & {r[0] for r in rows}
        lines = x["code"]["code"].split("\n")
        for kind, old, _, text in rows:
            if kind in ("same", "del"):
                assert lines[old - x["code"]["start_line"]] == text
    assert set(f["datasets"]) == {"analysis", "codefix"}
    m = orjson.loads((trained / "datasets" / "codefix" / "manifest.json").read_bytes())
    assert f["datasets"]["codefix"]["splits"]["train"]["replayed"] == m["splits"]["train"]["replayed"] > 0
    assert [x["stage"] for x in f["models"]] == ["analysis", "codefix"]
    for x in f["models"]:
        assert x["test_model"] and x["steps"] == 4 and x["eval"]["loss"]["base"] > 0
        assert len(x["curves"]["train"]) == 4 and [s for s, _ in x["curves"]["valid"]] == [0, 2, 4]
    assert f["models"][1]["eval"]["forgetting"]["before"] > 0 and f["models"][1]["from"] == "report-analysis"
    assert f["quality"]["total"]["findings"] == len(records) and f["stages"][0]["stage"] == "parse"


def test_verdicts_come_from_the_verification_report(trained):
    verify = trained / "training" / "codefix-verify.json"
    if not verify.is_file():
        pytest.skip("the scanners are not installed (make scanners): no verification report")
    report = orjson.loads(verify.read_bytes())
    f = report_facts.gather(trained)
    by_id = {x["id"]: x for x in f["findings"]}
    for fix in report["fixes"]:
        v = by_id[fix["finding_id"]]["verdict"]
        assert v["verified"] == fix["verified"] and v["reason"] == fix["reason"]
    unchecked = [x for x in f["findings"] if x["fix"] and x["id"] not in {v["finding_id"] for v in report["fixes"]}]
    assert all(x["verdict"]["reason"].startswith("not checked") for x in unchecked)
    assert f["counts"]["verified"] == report["verified"] and f["verification"]["total"] == report["total"]


def test_diff_rows_number_both_sides():
    rows = report_facts.diff_rows(["a", "b", "c"], ["a", "B", "c", "d"], 10, 10)
    assert rows == [["hunk", None, None, "@@ -10,3 +10,4 @@"], ["same", 10, 10, "a"], ["del", 11, None, "b"],
                    ["add", None, 11, "B"], ["same", 12, 12, "c"], ["add", None, 13, "d"]]
    assert report_facts.diff_rows(["x"], ["x"]) == []


def test_ticks_cover_the_range():
    assert ticks(7.51, 7.649) == [7.5, 7.55, 7.6, 7.65]
    assert ticks(0, 13) == [0, 5, 10, 15]


# ---------------------------------------------------------------- formats

def test_markdown_and_text(trained):
    records = analyses(trained)
    md = render(trained, "md")
    assert md.startswith("# secai report: build\n") and f"**{len(records)} findings**" in md
    assert md.count("<details>") == md.count("</details>") == len(records)
    assert "```diff\n@@ -" in md and "| analysis |" in md and "## Training" in md and "TEST MODEL" in md
    assert "| held-out split |" in md
    text = render(trained, "text")
    assert text.startswith("secai report: build\n") and f"findings: {len(records)} (" in text
    assert all(r["id"] in text for r in records)
    assert "stage codefix: report-codefix on tiny-olmo2 (TEST MODEL), 4 steps" in text


def test_missing_parts_are_absent_not_errors(untrained):
    f = report_facts.gather(untrained)
    assert f["models"] is None and f["verification"] is None and f["findings"]
    assert all(x["verdict"] is None for x in f["findings"])
    page = render(untrained)
    assert "No model was trained in this build" in page and "Fixes were not verified in this build" in page
    assert "loss-curve" not in page.split("<script>")[0].split("</style>")[1]
    assert "training: none" in render(untrained, "text") and "not verified: VERIFY off" in render(untrained, "md")
    # an empty build folder: every part absent
    empty = untrained.parent / "empty"
    empty.mkdir()
    assert "No analyses in this build" in render(empty) and "no analyses" in render(empty, "text")


def test_a_missing_or_damaged_build_is_one_error_line(untrained, tmp_path):
    code, out, err = run_command(Report, ["--build", str(tmp_path / "nope")], raw=True)
    assert code == 1 and out == "" and err.count("\n") == 1 and "no such build folder" in err
    broken = tmp_path / "broken"
    shutil.copytree(untrained, broken)
    (broken / "quality.json").write_text("{not json")
    code, out, err = run_command(Report, ["--build", str(broken)], raw=True)
    assert code == 1 and err.count("\n") == 1 and "quality.json: invalid JSON" in err


def test_untrusted_text_is_escaped_everywhere(untrained, tmp_path):
    """A scanner message, code and a fix carrying markup show as text in every format."""
    hostile = tmp_path / "build"
    shutil.copytree(untrained, hostile)
    records = analyses(hostile)
    target = next(r for r in records if r["analysis"].get("fix") and r.get("code_context"))
    target["finding"]["message"] = HOSTILE
    target["finding"]["title"] = "</summary></details><b>bold</b>"
    target["code_context"]["code"] += "\n" + HOSTILE
    target["analysis"]["remediation"] += " \x1b[31mred\x1b[0m [link](javascript:alert(1)) " + HOSTILE
    (hostile / "analyses.jsonl").write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
    page = render(hostile)
    assert HOSTILE not in page and "<b>bold</b>" not in page
    assert "&lt;script&gt;document.title=&quot;pwned&quot;&lt;/script&gt;" in page
    assert page.count("<script>") == 1  # the page's own
    md = render(hostile, "md")
    assert "<script>" not in md and "<b>bold" not in md and "\\<script\\>" in md and "\\[link\\]" in md
    text = render(hostile, "text")
    assert "\x1b" not in text and "\\x1b[31mred" in text


def test_output_file_is_written_atomically(untrained, tmp_path):
    out = tmp_path / "r" / "report.html"
    code, stdout, err = run_command(Report, ["--build", str(untrained), "-o", str(out)], raw=True)
    assert code == 0 and stdout == "" and "findings" in err
    assert out.read_text().startswith("<!doctype html>") and [p.name for p in out.parent.iterdir()] == ["report.html"]


def test_the_page_loads_nothing_and_names_no_local_path(trained, models_dir):
    page = render(trained)
    for needle in ("src=", "<link", "@import", "url(", "http-equiv=\"refresh\""):
        assert needle not in page, needle
    assert "Content-Security-Policy" in page and "default-src 'none'" in page
    for local in (str(trained), str(models_dir), str(ROOT), str(Path.home())):
        assert local not in page


# ---------------------------------------------------------------- a real browser

@functools.cache
def chromium() -> str | None:
    """Debian's chromium; when missing, installed by `make chromium` (apt-get, as root), the step
    `make test` runs first; None only when it is neither there nor installable."""
    def found():
        return shutil.which("chromium") or shutil.which("chromium-browser")

    if found() is None and os.geteuid() == 0 and shutil.which("apt-get") and shutil.which("make"):
        subprocess.run(["make", "--no-print-directory", "-s", "chromium"], cwd=ROOT, capture_output=True, timeout=1800)
    return found()


def browse(report: Path, check) -> None:
    """Open `report` in headless Chromium and run check(page); nothing but the file may be requested."""
    exe = chromium()
    if exe is None:
        pytest.skip("chromium is not installed and could not be (make chromium: apt-get install chromium, as root)")
    from playwright import sync_api  # the test extra: `make install` installs it

    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=["--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            asked, errors = [], []
            page.on("request", lambda r: asked.append(r.url))
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(report.resolve().as_uri())
            check(page)
            assert not errors, errors
            assert {u.split("#")[0] for u in asked} == {report.resolve().as_uri()}, asked
        finally:
            browser.close()


def check_rendered(report: Path, build: Path) -> None:
    """What a person sees: every finding, the curves, filters that hide the right findings, links."""
    records = analyses(build)
    stages = [s for s in ("analysis", "codefix", "combined") if (build / "finetune" / f"{s}.json").is_file()]

    def check(page):
        shown = page.eval_on_selector_all("details.finding:not([hidden])", "els => els.map(e => e.id)")
        assert sorted(shown) == sorted(r["id"] for r in records)
        assert page.text_content("#f-shown") == f"{len(records)} of {len(records)} findings shown"
        curves = page.eval_on_selector_all(
            "svg.loss-curve", "els => els.map(s => [s.dataset.stage, s.querySelectorAll('polyline.train').length,"
            " s.querySelectorAll('polyline.valid').length, s.getBoundingClientRect().width])")
        assert [c[0] for c in curves] == stages and all(c[1] == 1 and c[2] == 1 and c[3] > 100 for c in curves)
        assert page.locator("table.eval tbody tr").count() == len(stages)
        # severity filter
        severity = next(r["finding"]["severity"] for r in records)
        page.select_option("#f-severity", severity)
        shown = page.eval_on_selector_all("details.finding:not([hidden])", "els => els.map(e => e.id)")
        assert sorted(shown) == sorted(r["id"] for r in records if r["finding"]["severity"] == severity)
        assert page.locator("details.finding[hidden]").count() == len(records) - len(shown)
        # and a tool on top of it
        page.select_option("#f-tool", "bandit")
        shown = page.eval_on_selector_all("details.finding:not([hidden])", "els => els.map(e => e.id)")
        assert sorted(shown) == sorted(r["id"] for r in records if r["finding"]["severity"] == severity
                                       and r["finding"]["tool"] == "bandit")
        page.click("#f-clear")
        # free text: one rule id shows exactly the findings whose text holds it
        rule = next(r["finding"]["rule_id"] for r in records if r["finding"]["tool"] == "bandit")
        page.fill("#f-text", rule.lower())
        shown = page.eval_on_selector_all("details.finding:not([hidden])", "els => els.map(e => e.id)")
        texts = page.eval_on_selector_all("details.finding", "els => els.map(e => [e.id, e.textContent.toLowerCase()])")
        assert shown and sorted(shown) == sorted(i for i, t in texts if rule.lower() in t)
        assert page.is_visible(f"[id='{shown[0]}'] summary")
        # a link to a finding the filter hides: opened, highlighted, the filters cleared
        hidden = page.eval_on_selector_all("details.finding[hidden]", "els => els.map(e => e.id)")[0]
        page.evaluate("id => { location.hash = id; }", hidden)
        page.wait_for_function("id => document.getElementById(id).open", arg=hidden)
        assert page.eval_on_selector(f"[id='{hidden}']", "e => e.classList.contains('targeted') && !e.hidden")
        assert page.input_value("#f-text") == "" and page.is_visible(f"[id='{hidden}'] table.code")

    browse(report, check)


def test_the_page_in_a_browser(trained, tmp_path):
    report = tmp_path / "report.html"
    ok(Report, ["-q", "--build", str(trained), "-o", str(report)])
    check_rendered(report, trained)


def test_hostile_text_stays_text_in_the_browser(untrained, tmp_path):
    build = tmp_path / "build"
    shutil.copytree(untrained, build)
    records = analyses(build)
    records[0]["finding"]["message"] = HOSTILE
    (build / "analyses.jsonl").write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
    report = tmp_path / "report.html"
    ok(Report, ["-q", "--build", str(build), "-o", str(report)])

    def check(page):
        assert page.title() == "secai report: build"  # the script in the message never ran
        assert page.locator("details.finding img").count() == 0
        assert HOSTILE in page.text_content(f"[id='{records[0]['id']}'] .message")

    browse(report, check)


def test_plain_text_of_nothing():
    assert plain.text({"build": "b", "counts": None}).startswith("secai report: b\n  no analyses")
