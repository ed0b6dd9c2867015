"""secai installs as a package: the wheel carries the knowledge base, the schemas and the config
defaults, and its console scripts run a pipe from a folder outside the checkout.

The wheel is built from a copy of the package's sources (pip wheel, no build isolation: the venv's
setuptools, nothing downloaded) and installed into a fresh venv that borrows the project venv's
installed dependencies through a .pth line. That line only adds the folder: the editable install's
own .pth in it (which puts the checkout's lib/ on sys.path) is not processed there, so the installed
wheel's files are the only secai the fresh venv can import — which the test checks before the pipe.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import orjson
import pytest
from conftest import ROOT

from secai.records import schema_error

pytestmark = pytest.mark.skipif(not (ROOT / "pyproject.toml").is_file(), reason="needs the checkout")

REPORTS = ("bandit.json", "semgrep.sarif")  # two tools, two formats, from examples/artifacts
STEP_S = 120  # a hang guard per step, not a speed test


def run(argv, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=STEP_S, **kw)
    assert proc.returncode == 0, f"{argv[0]} exited {proc.returncode}:\n{proc.stdout}{proc.stderr}"
    return proc


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel, built from a copy of what `pip install .` reads (the checkout's build/ stays untouched)."""
    src, out = tmp_path_factory.mktemp("src"), tmp_path_factory.mktemp("wheel")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in ("lib", "schemas", "config"):
        shutil.copytree(ROOT / name, src / name, ignore=ignore, symlinks=True)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-index", "--no-build-isolation",
         str(src), "-w", str(out)], env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
    (found,) = out.glob("secai-*.whl")
    return found


@pytest.fixture(scope="module")
def venv(tmp_path_factory, wheel) -> Path:
    """A fresh venv with the wheel installed, the project venv's dependencies borrowed."""
    venv = tmp_path_factory.mktemp("venv")
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    python = venv / "bin" / "python"
    site = Path(run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    borrowed = dict.fromkeys(sysconfig.get_paths()[k] for k in ("purelib", "platlib"))
    (site / "borrowed-deps.pth").write_text("".join(f"{p}\n" for p in borrowed))
    # pip from the borrowed folder, run by the new venv's python: it installs there, scripts named after it;
    # --ignore-installed: the project venv's editable secai is seen but never uninstalled
    run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--ignore-installed", str(wheel)],
        env={**environ(venv), "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
    return venv


def environ(venv: Path, home: Path | None = None) -> dict:
    """A clean environment: the venv's scripts first on PATH, no SECAI_* setting, no PYTHONPATH."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("SECAI_") and k not in ("PYTHONPATH", "XDG_CONFIG_HOME", "VIRTUAL_ENV")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["HF_HUB_OFFLINE"] = "1"
    if home is not None:
        env["HOME"] = str(home)
    return env


def data_files(folder: Path) -> set[str]:
    """Every file of the package that is not code, through the symlinks, relative to lib/."""
    found = set()
    for top, dirs, files in os.walk(folder, followlinks=True):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        found.update(str((Path(top) / f).relative_to(folder.parent)) for f in files
                     if not f.endswith((".py", ".pyc")))
    return found


def test_the_wheel_carries_every_data_file_of_the_package(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = data_files(ROOT / "lib" / "secai")
    assert {"secai/defaults/secai.yaml", "secai/schemas/finding.schema.json", "secai/schemas/sarif-2.1.0.json",
            "secai/analysis/kb/harvested/checkov.json", "secai/analysis/kb/fixes/50_python.yaml"} <= expected
    assert expected - names == set(), "missing from the wheel (add them to [tool.setuptools.package-data])"


def test_the_installed_package_uses_its_own_files_only(venv, tmp_path):
    probe = ("import json, sys, secai; from secai import config, records; from secai.analysis import kb, rules; "
             "print(json.dumps({'secai': secai.__file__, 'checkout': config.CHECKOUT and str(config.CHECKOUT), "
             "'files': [str(p) for p in (config.SHIPPED, records.SCHEMA_DIR, kb.KB_DIR, kb.SCHEMA_FILE, "
             "rules.HARVESTED)], 'path': sys.path}))")
    out = orjson.loads(run([str(venv / "bin" / "python"), "-c", probe], cwd=tmp_path, env=environ(venv)).stdout)
    installed = Path(out["secai"]).resolve().parent
    assert installed.is_relative_to(venv.resolve()) and out["checkout"] is None
    for f in out["files"]:
        assert Path(f).is_relative_to(installed) and Path(f).exists(), f
    lib = ROOT / "lib"
    assert not [p for p in out["path"] if p and Path(p).resolve().is_relative_to(lib)], "the checkout's lib/ is on sys.path"


def test_the_installed_scripts_run_a_pipe_outside_the_checkout(venv, tmp_path):
    work, home = tmp_path / "work", tmp_path / "home"
    work.mkdir()
    for name in REPORTS:
        shutil.copy2(ROOT / "examples" / "artifacts" / name, work / name)
    # the user's own settings, in ~/.config/secai/secai.yaml over the packaged defaults
    mine = home / ".config" / "secai" / "secai.yaml"
    mine.parent.mkdir(parents=True)
    mine.write_text(f"analyze:\n  cache_dir: {tmp_path / 'cache'}\n")
    bindir = venv / "bin"
    pipe = (f"{bindir}/secai-parse -q {' '.join(REPORTS)} | {bindir}/secai-analyze -q --backend kb "
            f"| tee analyses.jsonl | {bindir}/secai-narrate -q --stage analysis")
    proc = run(["bash", "-o", "pipefail", "-c", pipe], cwd=work, env=environ(venv, home))
    assert proc.stderr == ""
    analyses = [orjson.loads(line) for line in (work / "analyses.jsonl").read_bytes().splitlines()]
    examples = [orjson.loads(line) for line in proc.stdout.splitlines()]
    assert analyses and len(examples) == len(analyses)
    assert {a["finding"]["tool"] for a in analyses} == {"bandit", "semgrep"}
    assert all(a["producer"]["backend"] == "kb" and a["analysis"]["remediation"] for a in analyses)
    for kind, recs in (("analysis/1", analyses), ("example/1", examples)):
        for rec in recs:
            assert rec["schema"] == kind and schema_error(kind, rec) is None
    assert any((tmp_path / "cache").iterdir()), "the user's config (cache_dir) was not read"
    assert sorted(os.listdir(work)) == sorted([*REPORTS, "analyses.jsonl"])  # nothing else written where it ran


def test_every_installed_console_script_starts_outside_the_checkout(venv, tmp_path):
    import tomllib

    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    for name in scripts:
        proc = run([str(venv / "bin" / name), "--version"], cwd=tmp_path, env=environ(venv, tmp_path))
        assert proc.stdout.split()[0] == name, proc.stdout


def test_the_installed_daemon_says_it_needs_a_checkout_in_one_line(venv, tmp_path):
    proc = subprocess.run([str(venv / "bin" / "secai-daemon"), "install", "--dry-run", "--unit-dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=STEP_S, cwd=tmp_path, env=environ(venv, tmp_path))
    assert proc.returncode == 1 and proc.stdout == "" and proc.stderr.count("\n") == 1, proc.stderr
    assert "an installed package: the daemon runs `make daemon-cycle` in a secai checkout" in proc.stderr


def test_the_installed_doctor_reports_the_packaged_and_the_users_config(venv, tmp_path):
    mine = tmp_path / "xdg" / "secai" / "secai.yaml"
    mine.parent.mkdir(parents=True)
    mine.write_text("lora:\n  rank: 4\n")
    env = {**environ(venv, tmp_path / "home"), "XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    proc = run([str(venv / "bin" / "secai-doctor"), "--check", "config", "--json"], cwd=tmp_path, env=env)
    report = orjson.loads(proc.stdout)
    (check,) = report["checks"]
    assert check["status"] == "ok", check
    assert Path(check["data"]["file"]).is_relative_to(venv.resolve())
    assert check["data"]["user_file"] == str(mine)
