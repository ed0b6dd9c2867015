"""secai-doctor's checks of what this installation is set up with (secai.ops.checks): the
configuration, the base models, and the optional integrations (scanners, Hugging Face and GitHub
tokens, the daemon)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from secai import config
from secai.ops.verdict import FAIL, Options, OK, WARN, Result, fmt_size, setting, tilde

# config sections `make all` reads: a bad value there blocks the pipeline; elsewhere it only warns
PIPELINE_SECTIONS = ("paths", "parse", "analyze", "split", "lora")


# ---------------------------------------------------------------- config

def check_config(opts: Options) -> Result:
    """Every problem secai.config finds — in config/secai.yaml, the user file (SECAI_CONFIG) and the
    SECAI_* variables: syntax, unknown sections, keys and variables, types, ranges and choices — and
    secai-lora's own check of the lora: section. A problem in a section `make all` reads, or one that
    spoils every setting, fails; one elsewhere only warns."""
    config.load.cache_clear()
    found = [(p.setting is None or p.setting.split(".")[0] in PIPELINE_SECTIONS, str(p), p) for p in config.problems()]
    if not any(p.setting is None or p.setting.startswith("lora.") for _, _, p in found):
        from secai.training.run import settings

        try:
            settings()
        except Exception as exc:
            found.append((True, f"lora: secai-lora refuses it: {exc}", None))
    shipped, user = tilde(config.SHIPPED), config.user_file()
    where = shipped + (f" + {user[0]} ({user[1]})" if user else "")
    data = {"file": str(config.SHIPPED), "user_file": str(user[0]) if user else None, "sections": config.sections(),
            "overrides": sorted(n for n in os.environ if n.startswith("SECAI_")), "problems": [t for _, t, _ in found]}
    if not found:
        overrides = f", {len(data['overrides'])} SECAI_* overrides" if data["overrides"] else ""
        return Result(OK, f"{where}: {len(data['sections'])} sections valid{overrides}", **data)
    envs, files = [], []
    for _, _, p in found:
        if p is None:  # secai-lora's refusal: the lora: values come from the variables set, or the files
            names = [n for n in sorted(os.environ) if n.startswith("SECAI_LORA_")]
            envs += names
            files += [] if names else config.files()[-1:]
        else:
            (envs if p.env else files).append(p.file)
    fixes = [f"fix or unset {', '.join(dict.fromkeys(envs))}"] if envs else []
    for f in dict.fromkeys(files):
        fixes.append(f"fix {f}" + (" (`git diff config/secai.yaml` shows what changed)"
                                  if f == config.files()[0] and config.CHECKOUT else ""))
    raise Result(FAIL if any(b for b, _, _ in found) else WARN, "; ".join(t for _, t, _ in found), "; ".join(fixes),
                 **data)


# ---------------------------------------------------------------- models

def _folder_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def check_base_models(opts: Options) -> Result:
    from secai.training import store as models

    store = models.models_dir()
    base = store / "base"
    found = []
    if base.is_dir():
        for d in sorted(p for p in base.iterdir() if p.is_dir() and not p.name.startswith(".")):
            if not (d / "config.json").is_file():
                continue
            entry_ = {"name": d.name, "path": str(d), "bytes": _folder_size(d),
                      "weights": any(d.glob("*.safetensors"))}
            if opts.hash:
                entry_["content_hash"] = models.content_hash(d)
            found.append(entry_)
    fine_tuned = store / "fine-tuned"
    tuned = sorted(p.name for p in fine_tuned.iterdir() if (p / "metadata.json").is_file()) \
        if fine_tuned.is_dir() else []
    tiny = models.tiny_base()
    tiny_built = tiny is not None and (tiny / models.MANIFEST).is_file()
    tiny_hash = None
    if tiny_built:
        try:
            tiny_hash = json.loads((tiny / models.MANIFEST).read_text(encoding="utf-8")).get("content_hash")
        except (OSError, ValueError):
            tiny_hash = None

    def describe(m):
        h = f", {m['content_hash'][:12]}" if m.get("content_hash") else ""
        return f"{m['name']} ({fmt_size(m['bytes'])}{h})"

    listing = ", ".join(describe(m) for m in found) or "none"
    tiny_text = (f"tiny test model built ({tiny_hash[:12] if tiny_hash else 'no hash'})" if tiny_built
                 else "tiny test model not built yet (make builds it, offline)" if tiny
                 else "no tiny test model (an installed package: python -m secai.training.tinymodel DIR builds one)")
    data = {"models_dir": str(store), "exists": store.is_dir(), "base": found, "fine_tuned": tuned,
            "real_base": models.REAL_BASE, "tiny": {"path": tiny and str(tiny), "built": tiny_built, "content_hash": tiny_hash}}
    detail = (f"{tilde(store)}: base/ {listing}; fine-tuned/ {len(tuned)}; {tiny_text}" if store.is_dir()
              else f"no model store at {tilde(store)}; {tiny_text}")
    get_real = (f"`make base-model` converts {models.REAL_BASE_HF} into {tilde(base / models.REAL_BASE)} "
                "(needs the network once), or point SECAI_MODELS_DIR at a store that has it")
    real = next((m for m in found if m["name"] == models.REAL_BASE), None)
    if real is None:
        fallback = "uses the tiny RANDOM-WEIGHT model" if tiny else "needs --base-model"
        raise Result(WARN, f"{detail} — fine-tuning {fallback}", get_real, **data)
    if not real["weights"]:
        # the Makefile picks this folder as soon as it has a config.json: training would fail
        raise Result(FAIL, detail + f" — {models.REAL_BASE} has no weights (*.safetensors)",
                     f"remove {tilde(base / models.REAL_BASE)} and rerun `make base-model`", **data)
    return Result(OK, detail, **data)


# ---------------------------------------------------------------- optional integrations

def check_scanners(opts: Options) -> Result:
    from secai.analysis.verify import VERIFIERS, Scanners

    directory = setting("verify", "scanners_dir")
    scanners = Scanners.find(directory)
    where = (f"in {tilde(Path(str(directory)).expanduser())}" if directory
             else "in .scanners/ or on PATH")
    found = {name: scanners.paths.get(name) for name in VERIFIERS}
    missing = [n for n, p in found.items() if not p]
    have = ", ".join(f"{n} ({tilde(Path(p))})" for n, p in found.items() if p)
    fix = (f"`make scanners` (pinned checkov, semgrep and bandit in .scanners/), or install {', '.join(missing)} "
           "elsewhere and set verify.scanners_dir (SECAI_VERIFY_SCANNERS_DIR) or put them on PATH")
    if len(missing) == len(VERIFIERS):
        raise Result(WARN, f"none of {', '.join(VERIFIERS)} {where}: fix verification (--verify-fixes) is off",
                     fix, scanners=found, scanners_dir=directory)
    if missing:
        raise Result(WARN, f"{have}; {', '.join(missing)} not {where}: their fixes stay unverified",
                     fix, scanners=found, scanners_dir=directory)
    return Result(OK, f"fix verification can run: {have}", scanners=found, scanners_dir=directory)


def _env_file_names() -> tuple[Path, set[str], bool]:
    """(daemon.env_file, the variable NAMES it sets, whether others may read it). Values are not kept."""
    import stat

    path = Path(str(setting("daemon", "env_file"))).expanduser()
    names, exposed = set(), False
    try:
        exposed = bool(path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO))
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            key, sep, _ = line.strip().removeprefix("export ").partition("=")
            if sep and key.strip().isidentifier():
                names.add(key.strip())
    except OSError:
        pass
    return path, names, exposed


def _present(name: str) -> bool:
    return bool(os.environ.get(name))


def _token_result(sources: list[str], names: set[str], env_file: Path, exposed: bool, absent: str, get: str) -> Result:
    """The verdict on a token: where it is present (never its value), or what to do."""
    in_file = bool(names)
    if in_file:
        sources.append(f"{tilde(env_file)} (daemon cycles)")
    data = {"present": bool(sources), "sources": sources}
    if exposed and in_file:
        raise Result(WARN, f"present: {', '.join(sources)}; {tilde(env_file)} is readable by others, so the daemon "
                           "refuses it", f"chmod 600 {tilde(env_file)}", **data)
    if not sources:
        raise Result(WARN, f"absent: {absent}", get, **data)
    return Result(OK, f"present: {', '.join(sources)} (value not shown)", **data)


def check_hf_token(opts: Options) -> Result:
    env_file, names, exposed = _env_file_names()
    sources = [n for n in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN") if _present(n)]
    if not sources:
        from huggingface_hub import get_token

        if get_token():  # the value goes no further than this truth test
            sources.append("stored login (`hf auth login`)")
    return _token_result(sources, names & {"HF_TOKEN"}, env_file, exposed,
                         "secai-push cannot upload datasets or models",
                         "`hf auth login`, or export HF_TOKEN (a write token) — only for publishing")


def check_github_token(opts: Options) -> Result:
    env_file, names, exposed = _env_file_names()
    sources = [n for n in ("GITHUB_TOKEN", "GH_TOKEN") if _present(n)]
    return _token_result(sources, names & {"GITHUB_TOKEN", "GH_TOKEN"}, env_file, exposed,
                         "secai-fetch cannot download CI artifacts",
                         f"export GITHUB_TOKEN (read access to Actions), or put it in {tilde(env_file)} (chmod 600) "
                         "for the daemon — only for fetching")


def check_daemon(opts: Options) -> Result:
    from secai.ops import units

    plat = units.platform_name("auto")
    directory = units.unit_dir(plat)
    files = [directory / n for n in units.render(plat)]
    present = [p for p in files if p.exists()]
    kind = "launchd agent" if plat == "macos" else "systemd user timer"
    data = {"platform": plat, "files": [str(p) for p in files], "present": [str(p) for p in present],
            "installed": len(present) == len(files)}
    names = ", ".join(tilde(p) for p in files)
    if not present:
        raise Result(WARN, f"not installed ({kind}: {names})",
                     "`make daemon-install` to run fetch + build every "
                     f"{setting('daemon', 'interval_s')} s — only for continuous builds", **data)
    if len(present) < len(files):
        raise Result(WARN, f"partly installed: {', '.join(tilde(p) for p in present)} only",
                     "`make daemon-install` again (or `secai-daemon uninstall`)", **data)
    return Result(OK, f"installed ({kind}: {names}); `make daemon-status` tells whether it runs", **data)
