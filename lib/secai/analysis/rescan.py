"""Re-scanning copies: one scanner run over a folder of files, with the scanner's whole rule set for them.

secai.analysis.verify writes fixed copies of files (and one unmodified copy of each source file, its
baseline) into a folder and asks what the reporting scanner finds there. Every run uses all the
rules the report could have come from, so that a fix which adds another finding shows:
- bandit: every test (`-r .`, `--ignore-nosec`);
- checkov: every check of the given frameworks (`--framework`, the frameworks the findings' checks
  belong to; all frameworks when one is unknown), `--skip-download`;
- semgrep: the whole config the report was made with (Scanners.semgrep_configs), `--disable-nosem`.

The answer is a Scan: the files the scanner demonstrably read (Checkov: it has a result, pass or
fail, of some check there; Bandit and Semgrep: scanned without a parse error) and each file's
findings as Hits (rule id, lines, resource). A Semgrep rule id loses the config folder's location
(`work.src.semgrep-rules.python.x` is `semgrep-rules.python.x`, as the report names it), so no local
path shows. Scanners run as an argument list (no shell), with a timeout, in their own process group,
with telemetry and update checks off; nothing from a report or a fix is ever executed. Scanners are
found in `verify.scanners_dir` (DIR or DIR/bin), else in .scanners/, else on PATH.

    scan = semgrep(Path("work/run0"), Scanners.find(None, ["rules"]))
    scan.read, scan.hits["1/app.py"]
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import yaml

VERIFIERS = ("bandit", "checkov", "semgrep")   # tools whose findings can be re-checked
TERRAFORM = (".tf", ".tf.json", ".tfvars", ".tfvars.json")
MAX_COPY = 2 * 1024 * 1024       # bytes: a bigger file (or Terraform sibling) is not copied
QUIET_ENV = {"SEMGREP_ENABLE_VERSION_CHECK": "0", "SEMGREP_SEND_METRICS": "off", "CHECKOV_PARALLELIZATION_TYPE": "none",
             "PYTHONHASHSEED": "0", "BANDIT_NO_BANNER": "1"}


@dataclass
class Scanners:
    """Where the scanners are, what Semgrep rules the reports were made with, and the timeout."""

    paths: dict = field(default_factory=dict)     # name -> executable path (absent: not installed)
    semgrep_configs: tuple = ()
    timeout: float = 600.0

    @classmethod
    def find(cls, scanners_dir: str | os.PathLike | None = None, semgrep_configs=(), timeout: float = 600.0):
        """The scanners in `scanners_dir` (or its bin/); without one, in the project's own scanner
        venv in the checkout (`make scanners`: .scanners/) when there is one, else on PATH."""
        from secai.config import CHECKOUT

        if not scanners_dir and CHECKOUT and (CHECKOUT / ".scanners" / "bin").is_dir():
            scanners_dir = CHECKOUT / ".scanners"
        paths = {}
        for name in VERIFIERS:
            if scanners_dir:
                found = next((str(p) for p in (Path(scanners_dir) / name, Path(scanners_dir) / "bin" / name)
                              if p.is_file() and os.access(p, os.X_OK)), None)
            else:
                found = shutil.which(name)
            if found:  # absolute: the scanners run in a temporary directory
                paths[name] = os.path.abspath(found)
        return cls(paths, tuple(os.path.abspath(c) for c in semgrep_configs), float(timeout))


@dataclass(frozen=True)
class Hit:
    """One finding of a scanner run: its rule id, first and last line, and (Checkov) resource."""

    rule: str
    lines: tuple[int, int]
    resource: str | None = None


@dataclass
class Scan:
    """What one run saw: the files it read (paths relative to the folder) and the findings in each."""

    read: set[str] = field(default_factory=set)
    hits: dict[str, list[Hit]] = field(default_factory=dict)

    def add(self, path: str, hit: Hit) -> None:
        self.hits.setdefault(path, []).append(hit)


def write_copy(run: Path, name: str, rel: str, text: str, real: Path, root: Path, tool: str) -> str:
    """Write `text` as <run>/<name>/<rel> (a Terraform file for Checkov with the other Terraform
    files of its directory, whose graph checks connect resources across files); `name/rel`."""
    target = run / name / PurePosixPath(rel)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
    if tool == "checkov" and real.name.endswith(TERRAFORM):
        base = root.resolve()
        for sibling in sorted(real.parent.iterdir()):
            if (sibling.name != real.name and sibling.name.endswith(TERRAFORM) and not sibling.is_symlink()
                    and sibling.is_file() and sibling.resolve().is_relative_to(base)
                    and sibling.stat().st_size <= MAX_COPY):
                shutil.copyfile(sibling, target.parent / sibling.name)
    return f"{name}/{rel}"


# ---------------------------------------------------------------- running a scanner

def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP")}
    env.update(QUIET_ENV)
    return env


def run_scanner(argv: list[str], cwd: Path, timeout: float) -> tuple[int, str, str]:
    """Run a scanner (no shell), quiet and offline (QUIET_ENV), in its own process group; the whole
    group is killed on timeout (RuntimeError). (code, stdout, stderr)."""
    proc = subprocess.Popen(argv, cwd=cwd, env=_env(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise RuntimeError(f"timed out after {timeout:g} s") from None
    return proc.returncode, out, err


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1][:200] if lines else "no output"


def _json_out(out: str):
    """The JSON document a scanner printed (Checkov may print lines before it)."""
    start = min((i for i in (out.find("{"), out.find("[")) if i >= 0), default=-1)
    if start < 0:
        raise ValueError("no JSON in the scanner's output")
    return json.loads(out[start:])


def _rel(path: str) -> str:
    p = path.replace("\\", "/")
    while p.startswith(("./", "/")):
        p = p[2:] if p.startswith("./") else p[1:]
    return p


def bandit_tests(scanners: Scanners, cwd: Path) -> set[str]:
    """The test ids this Bandit knows (B101, ...), from its --help; empty when it lists none."""
    code, out, err = run_scanner([scanners.paths["bandit"], "--help"], cwd, scanners.timeout)
    return set(re.findall(r"^\s+(B\d{3})\s", out, re.M))


def bandit(folder: Path, scanners: Scanners) -> Scan:
    """Every Bandit test over the folder."""
    code, out, err = run_scanner([scanners.paths["bandit"], "-q", "-f", "json", "--exit-zero", "--ignore-nosec", "-r", "."],
                          folder, scanners.timeout)
    report = _json_out(out)
    broken = {_rel(e.get("filename", "")) for e in report.get("errors", [])}
    scan = Scan({_rel(p) for p in report.get("metrics", {}) if p != "_totals"} - broken)
    for r in report.get("results", []):
        lines = r.get("line_range") or [r["line_number"]]
        scan.add(_rel(r["filename"]), Hit(r["test_id"], (min(lines), max(lines))))
    return scan


def checkov(folder: Path, scanners: Scanners, frameworks: set[str] | None) -> Scan:
    """Every Checkov check of `frameworks` (None: of all) over the folder."""
    argv = [scanners.paths["checkov"], "--skip-download", "--soft-fail", "--compact", "-d", ".", "-o", "json"]
    if frameworks:  # a Terraform directory may hold .tf and .tf.json files alike
        terraform = {"terraform", "terraform_json"} if frameworks & {"terraform", "terraform_json"} else set()
        argv += ["--framework", ",".join(sorted(frameworks | terraform))]
    code, out, err = run_scanner(argv, folder, scanners.timeout)
    if code != 0:
        raise RuntimeError(f"exit {code}: {_last_line(err or out)}")
    report = _json_out(out)
    scan = Scan()
    for part in report if isinstance(report, list) else [report]:
        results = part.get("results") if isinstance(part, dict) else None
        for r in (results or {}).get("passed_checks", []):
            scan.read.add(_rel(r["file_path"]))
        for r in (results or {}).get("failed_checks", []):
            path = _rel(r["file_path"])
            scan.read.add(path)
            scan.add(path, Hit(r["check_id"], tuple(r.get("file_line_range") or (0, 0)), r.get("resource")))
    return scan


def semgrep_rule_ids(configs) -> set[str]:
    """The ids of the rules in Semgrep config files or directories (read as YAML data)."""
    ids = set()
    for config in configs:
        p = Path(config)
        files = sorted(x for x in p.rglob("*") if x.suffix in (".yml", ".yaml")) if p.is_dir() else [p]
        for f in files:
            try:
                doc = yaml.safe_load(f.read_text(encoding="utf-8"))
            except (OSError, yaml.YAMLError):
                continue
            for rule in (doc or {}).get("rules", []) if isinstance(doc, dict) else []:
                if isinstance(rule, dict) and isinstance(rule.get("id"), str):
                    ids.add(rule["id"])
    return ids


def own_id(rule_id: str) -> str:
    """A Semgrep rule's own id: the check id less the config path Semgrep prefixes it with."""
    return rule_id.rsplit(".", 1)[-1]


def _unplaced(check_id: str, configs: list[str]) -> str:
    """A Semgrep check id less the location of its config folder (Semgrep prefixes the config's
    absolute path, dotted): `semgrep-rules.python.x` as a report run inside the project names it."""
    for c in configs:
        where = ".".join(Path(c).resolve().parent.parts[1:])
        if where and check_id.startswith(where + "."):
            return check_id[len(where) + 1:]
    return check_id


def semgrep(folder: Path, scanners: Scanners) -> Scan:
    """The whole Semgrep config (every config given, that exists) over the folder."""
    configs = [str(Path(c).resolve()) for c in scanners.semgrep_configs if Path(c).exists()]
    if not configs:
        raise RuntimeError("no Semgrep config")
    (folder / ".semgrepignore").write_text("# nothing is ignored: every copy is a target\n")
    argv = [scanners.paths["semgrep"], "scan", "--json", "--metrics", "off", "--disable-nosem", "--no-git-ignore",
            "--quiet", "--disable-version-check"]
    for c in configs:
        argv += ["--config", c]
    code, out, err = run_scanner(argv + ["."], folder, scanners.timeout)
    if code not in (0, 1):
        raise RuntimeError(f"exit {code}: {_last_line(err or out)}")
    report = _json_out(out)
    broken = {_rel(e.get("path", "")) for e in report.get("errors", []) if e.get("path")}
    scan = Scan({_rel(p) for p in report.get("paths", {}).get("scanned", [])} - broken)
    for r in report.get("results", []):
        scan.add(_rel(r["path"]), Hit(_unplaced(r["check_id"], configs), (r["start"]["line"], r["end"]["line"])))
    return scan
