"""Publishing to the Hugging Face Hub: a dataset or a model folder, with its card, in one commit (what
secai-push and the daemon run; the command: secai.commands.push).

What happens:
1. The folder is checked. A dataset (written by secai-split) needs its card (README.md with YAML
   front matter), a valid manifest.json (dataset/1) whose SHA-256 of every file matches, and no
   message in which secai.secrets finds a secret (the check secai-split makes), nor a secret in
   its card or manifest. A model needs its card (README.md with YAML front matter),
   metadata.json, at least one *.safetensors file, no secret in its text files, and must pass
   `secai-lora validate` (secai.training.run.validate: files, hashes, shapes, loads and generates).
2. The files to publish are copied into a staging folder (push.staging/<kind>-<owner>--<name>,
   replaced whole): for a dataset, the files its manifest lists plus manifest.json; for a model,
   every file except hidden ones and mlx-lm's intermediate checkpoints
   (adapters/NNNNNNN_adapters.safetensors) — the card's loss plot loss.png and eval.json included. `--dry-run` stops here and lists what would be sent.
3. The repository is created if needed (private unless --public or push.private is false; an
   existing repository keeps its visibility, but a private push to a public one is refused), the
   branch `--revision` too, and the staged folder is sent as ONE commit (huggingface_hub
   create_commit: the card is in the same commit as the data) that also deletes files of the
   branch no longer in the folder (.gitattributes excepted) — the branch then holds exactly the
   staged folder. The commit message carries provenance: secai version, counts, the source
   commits and CI runs the examples came from, and the SHA-256 of every file.

With --skip-unchanged (the daemon's way), a folder whose files equal the last push to the same
repository and branch (push.state) is neither checked, staged nor sent.

The token comes from HF_TOKEN or huggingface_hub's stored login (`hf auth login`); it is never
printed or written. HF_ENDPOINT points the client at another Hub.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from pathlib import Path

import orjson

from secai import __version__
from secai import config
from secai.records import read_jsonl_strict, schema_error, strings
from secai.errors import InputError
from secai.files import building, front_matter, now_iso, read_state, sha256_file, write_state

KINDS = {"dataset": "dataset", "model": "model"}      # kind -> Hub repo type
REPO_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}")
CHECKPOINT = re.compile(r"(?:^|/)\d+_adapters\.safetensors$")  # mlx-lm's intermediate adapter checkpoints
TEXT_SUFFIXES = {".md", ".json", ".jsonl", ".txt", ".yaml", ".yml"}
# ---------------------------------------------------------------- checks

def json_object(path: Path, missing: str) -> dict:
    """A JSON file holding an object; InputError naming the file otherwise (`missing` when absent)."""
    try:
        value = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        raise InputError(str(path), None, missing) from None
    except orjson.JSONDecodeError as exc:
        raise InputError(str(path), None, f"invalid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise InputError(str(path), None, "not a JSON object")
    return value


def check_text(path: Path, rel: str) -> None:
    """InputError at the first line of a text file in which secai.secrets finds a secret."""
    from secai.secrets import find

    with open(path, encoding="utf-8", errors="replace") as fh:
        for lineno, line in enumerate(fh, 1):
            names = find(line)
            if names:
                raise InputError(str(path), lineno, f"secret pattern {', '.join(sorted(set(names)))} found in "
                                                    f"{rel}; refusing to publish it")


LOCAL_PATH = re.compile(r"^(?:/|~|[A-Za-z]:[\\/]|\\\\)")  # POSIX, home, Windows drive or UNC


def check_no_local_path(path: Path, rel: str) -> None:
    """InputError when a model's metadata.json or eval.json records an absolute local path (a model
    trained before secai-lora recorded paths relative to the models dir: train it again)."""
    found = next((s for s in strings(json_object(path, "missing")) if LOCAL_PATH.match(s)), None)
    if found is not None:
        raise InputError(str(path), None, f"{rel} records the local path {found!r}; refusing to publish it "
                                          f"(secai-lora train records paths relative to the models dir: train it again)")


def check_dataset(src: Path) -> dict:
    """Check a dataset folder (see the module docstring); returns facts for the commit message:
    manifest, files to publish, source commits and CI runs found in the examples' provenance."""
    from secai.dataset.split import MANIFEST_KIND
    from secai.secrets import record_secrets

    front_matter(src / "README.md")
    mpath = src / "manifest.json"
    manifest = json_object(mpath, "missing: not a dataset written by secai-split")
    if manifest.get("schema") != MANIFEST_KIND:
        raise InputError(str(mpath), None, f"not a {MANIFEST_KIND} manifest")
    reason = schema_error(MANIFEST_KIND, manifest)
    if reason:
        raise InputError(str(mpath), None, reason)
    listed = manifest["files"]
    if "README.md" not in listed:
        raise InputError(str(mpath), None, "the manifest does not list the card README.md")
    for name, digest in sorted(listed.items()):
        p = src / name
        if "/" in name or name.startswith(".") or p.is_symlink() or not p.is_file():
            raise InputError(str(p), None, "listed in manifest.json but missing (or not a plain file)")
        if sha256_file(p) != digest:
            raise InputError(str(p), None, "its SHA-256 differs from manifest.json: the folder was changed "
                                           "after secai-split wrote it")
    stray = sorted(p.name for p in src.glob("*.jsonl") if p.name not in listed)
    if stray:
        raise InputError(str(src / stray[0]), None, "a split file manifest.json does not list")
    commits, runs = set(), set()
    for name in sorted(n for n in listed if n.endswith(".jsonl")):
        for lineno, rec in read_jsonl_strict(str(src / name), None):
            hits = record_secrets(rec)  # every field, metadata included
            if hits:
                where, names = hits[0]
                raise InputError(str(src / name), lineno,
                                 f"{where}: secret pattern {', '.join(names)} found; "
                                 "a dataset that fails the secret-redaction check is not published")
            prov = (rec.get("metadata") or {}).get("provenance") or {}
            if prov.get("commit"):
                commits.add(prov["commit"])
            if prov.get("run_id"):
                runs.add(prov["run_id"])
    for name in sorted(n for n in listed if not n.endswith(".jsonl") and Path(n).suffix in TEXT_SUFFIXES):
        check_text(src / name, name)
    check_text(mpath, "manifest.json")
    return {"manifest": manifest, "files": sorted(listed) + ["manifest.json"], "commits": commits, "runs": runs}


def model_files(src: Path) -> list[str]:
    """The files of a model folder that are published (relative POSIX paths, sorted)."""
    out = []
    for root, dirs, files in os.walk(src):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for d in dirs:
            if (Path(root) / d).is_symlink():
                raise InputError(str(Path(root) / d), None, "a symlink; only plain files and folders are published")
        for f in sorted(files):
            p = Path(root) / f
            rel = p.relative_to(src).as_posix()
            if f.startswith(".") or f.endswith(".tmp") or CHECKPOINT.search(rel):
                continue
            if p.is_symlink() or not p.is_file():
                raise InputError(str(p), None, "a symlink or special file; only plain files are published")
            out.append(rel)
    return sorted(out)


def check_model(src: Path, log=None) -> dict:
    meta = front_matter(src / "README.md")
    mpath = src / "metadata.json"
    metadata = json_object(mpath, "missing: a model is published with its metadata.json")
    files = model_files(src)
    if not any(f.endswith(".safetensors") for f in files):
        raise InputError(str(src), None, "no *.safetensors weights or adapters to publish")
    from secai.training.run import validate

    problems = validate(src)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise InputError(str(src), None, f"not a valid model (secai-lora validate): {problems[0]}{more}")
    for rel in files:
        if Path(rel).suffix in TEXT_SUFFIXES:
            check_text(src / rel, rel)
    for rel in ("metadata.json", "eval.json"):
        if rel in files:
            check_no_local_path(src / rel, rel)
    commits = {metadata[k] for k in ("source_commit", "commit") if isinstance(metadata.get(k), str)}
    commits |= {c for c in metadata.get("source_commits") or [] if isinstance(c, str)}
    return {"metadata": metadata, "card": meta, "files": files, "commits": commits, "runs": set()}


# ---------------------------------------------------------------- staging and provenance

def stage(src: Path, files: list[str], out: Path) -> list[dict]:
    """Copy `files` of src into the folder out (replaced whole, atomically); [{path, size, sha256}]."""
    with building(out) as tmp:
        listing = []
        for rel in files:
            dest = tmp / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src / rel, dest)
            listing.append({"path": rel, "size": dest.stat().st_size, "sha256": sha256_file(dest)})
        if out.exists() and not (out / ".secai-staged").is_file():
            raise InputError(str(out), None, "exists and is not a staging folder of secai-push; refusing to replace it")
        (tmp / ".secai-staged").write_text("staged by secai-push; replaced on every push\n")
    return listing


def digest(listing: list[dict]) -> str:
    """One SHA-256 over the staged files (paths and contents): what --skip-unchanged compares."""
    h = hashlib.sha256()
    for f in sorted(listing, key=lambda f: f["path"]):
        h.update(f"{f['path']}\0{f['sha256']}\n".encode())
    return h.hexdigest()


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


def model_facts(md: dict) -> list[str]:
    """Lines about a model from its metadata.json (secai-lora's model/1, or any flat object):
    names, hashes and counts — never local paths."""
    def pick(obj, *keys):
        return {k: obj[k] for k in keys if isinstance(obj, dict) and isinstance(obj.get(k), (str, int, float))
                and not isinstance(obj.get(k), bool)}

    out = []
    base = md.get("base_model")
    if isinstance(base, dict):
        b = pick(base, "hf_id", "converted_from", "name", "content_hash")
        out.append("base model: " + ", ".join(f"{k} {v}" for k, v in b.items()) +
                   (" (the random-weight test model)" if base.get("test_model") else ""))
    elif isinstance(base, str):
        out.append(f"base model: {base}")
    data = md.get("dataset")
    if isinstance(data, dict):
        d = pick(data, "hub_id", "name", "manifest_sha256", "examples")
        out.append("dataset: " + ", ".join(f"{k} {v}" for k, v in d.items()))
    elif isinstance(data, str):
        out.append(f"dataset: {data}")
    flat = pick(md, "stage", "run_id", "adapter_sha256", "iters", "secai_version", "license")
    flat.update({f"training {k}": v for k, v in pick(md.get("training"), "steps", "epochs", "best_step").items()})
    out += [f"{k}: {v}" for k, v in flat.items()]
    return out


def commit_message(kind: str, facts: dict, listing: list[dict], extra_commits: list[str]) -> tuple[str, str]:
    """(summary, description) of the commit: what is published and where it came from."""
    commits = sorted(set(extra_commits) | facts["commits"])
    source = (f"from {commits[0][:12]}" if len(commits) == 1 else
              f"from {len(commits)} source commits" if commits else "source commit unknown")
    total = sum(f["size"] for f in listing)
    lines = [f"Published by secai-push (secai {__version__})."]
    if kind == "dataset":
        m = facts["manifest"]
        per = ", ".join(f"{s} {info['examples']}" for s, info in m["splits"].items())
        summary = f"secai {__version__}: dataset, {m['examples']} examples ({per}), {source}"
        lines += [f"dataset: {m['name']!r} written by secai-split {m['secai_version']}",
                  f"examples: {m['examples']} ({per}); groups: {m['groups']}; "
                  f"stages: {', '.join(f'{k} {v}' for k, v in m['stages'].items())}",
                  f"split: seed {m['seed']}, group_by {m['group_by']}, fractions "
                  f"{', '.join(f'{k} {v:g}' for k, v in m['fractions'].items())}",
                  "inputs: " + ", ".join(f"{i['path']} ({i['examples']} examples, sha256 {i['sha256']})"
                                         for i in m["inputs"])]
    else:
        md = facts["metadata"]
        name = md.get("name") or facts["card"].get("model_name") or "model"
        summary = f"secai {__version__}: model {name}, {len(listing)} files ({_size(total)}), {source}"
        lines += model_facts(md)
    if commits:
        lines.append("source commits: " + ", ".join(commits[:20]) + (f" (+{len(commits) - 20} more)"
                                                                    if len(commits) > 20 else ""))
    if facts["runs"]:
        runs = sorted(facts["runs"])
        lines.append("CI runs: " + ", ".join(runs[:20]) + (f" (+{len(runs) - 20} more)" if len(runs) > 20 else ""))
    lines.append(f"files ({len(listing)}, {_size(total)}):")
    lines += [f"  {f['path']}  {f['size']} bytes  sha256 {f['sha256']}" for f in listing]
    return summary, "\n".join(lines) + "\n"


# ---------------------------------------------------------------- the Hub

def hub_token() -> str | None:
    """HF_TOKEN, else huggingface_hub's stored login; None when there is neither."""
    from huggingface_hub import get_token

    return get_token()


def upload(staged: Path, listing: list[dict], repo: str, repo_type: str, *, private: bool, private_explicit: bool,
           revision: str, summary: str, description: str, token: str, log) -> dict:
    """Create the repository and branch if needed, then send the staged folder as one commit."""
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi
    from huggingface_hub.errors import HfHubHTTPError

    api = HfApi(endpoint=os.environ.get("HF_ENDPOINT") or None, token=token)
    created = True
    try:
        api.create_repo(repo, repo_type=repo_type, private=private)
    except HfHubHTTPError as exc:
        if exc.response is None or exc.response.status_code != 409:
            raise
        created = False
    if revision != "main" and not revision.startswith("refs/"):
        api.create_branch(repo, branch=revision, repo_type=repo_type, exist_ok=True)
    info = api.repo_info(repo, repo_type=repo_type, revision=revision)
    if private and info.private is False:
        raise InputError(repo, None, f"the {repo_type} repository is public and this push is private "
                                     f"({'--private' if private_explicit else 'push.private'}): refusing to publish; "
                                     "make it private on the Hub, or push with --public")
    if not private and info.private:
        log(f"note: {repo} is private and stays so (--public only applies when the repository is created)")
    ours = {f["path"] for f in listing}
    stale = [] if created else sorted(p for p in api.list_repo_files(repo, repo_type=repo_type, revision=revision)
                                      if p not in ours and p != ".gitattributes")
    operations = [CommitOperationAdd(path_in_repo=f["path"], path_or_fileobj=str(staged / f["path"]))
                  for f in listing]
    operations += [CommitOperationDelete(path_in_repo=p) for p in stale]
    result = api.create_commit(repo, operations, commit_message=summary, commit_description=description,
                               repo_type=repo_type, revision=revision, parent_commit=info.sha)
    return {"oid": result.oid, "url": result.commit_url, "created_repo": created, "deleted": stale}


def _scrubbed(text: str, token: str | None) -> str:
    from secai.secrets import redact, scrub

    return scrub(redact(text, [token] if token else []))


# ---------------------------------------------------------------- publish (the command and the daemon)

def publish(kind: str, src: Path, repo: str, *, private: bool | None = None, revision: str | None = None,
            staging: Path | None = None, dry_run: bool = False, skip_unchanged: bool = False,
            source_commits: list[str] = (), state: Path | None = None, log=lambda m: None) -> dict:
    """Check, stage and (unless dry_run) push one folder; returns the report secai-push prints."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {sorted(KINDS)}")
    if not REPO_ID.fullmatch(repo) or ".." in repo or repo.endswith((".git", ".")):
        raise InputError(repo, None, "not a Hub repository id (OWNER/NAME: letters, digits, '-', '_', '.')")
    repo_type = KINDS[kind]
    private_explicit = private is not None
    private = config.get("push", "private") if private is None else private
    revision = revision or config.get("push", "revision")
    src = Path(src)
    if not src.is_dir():
        raise InputError(str(src), None, "not a directory")
    key = f"{repo_type}:{repo}@{revision}"
    state = Path(state or config.get("push", "state"))
    owner, name = repo.split("/")
    staged = Path(staging) if staging else Path(config.get("push", "staging")) / f"{kind}-{owner}--{name}"
    if skip_unchanged and not dry_run:
        # what was pushed was checked then: an unchanged folder is neither checked (a model's
        # validation may load and run it) nor staged again
        last = load_state(state).get(key) or {}
        current = _source_digest(kind, src)
        if current and last.get("digest") == current:
            log(f"{key}: unchanged since commit {str(last.get('commit'))[:12]}; nothing pushed")
            return {"kind": kind, "repo": repo, "repo_type": repo_type, "revision": revision, "private": private,
                    "source": str(src), "staged": str(staged), "dry_run": False, "digest": current,
                    "status": "unchanged", "commit": {"oid": last.get("commit"), "url": last.get("url")}}
    facts = check_dataset(src) if kind == "dataset" else check_model(src, log)
    listing = stage(src, facts["files"], staged)
    summary, description = commit_message(kind, facts, listing, list(source_commits))
    report = {"kind": kind, "repo": repo, "repo_type": repo_type, "revision": revision, "private": private,
              "source": str(src), "staged": str(staged), "dry_run": dry_run, "digest": digest(listing),
              "commit_message": summary, "commit_description": description, "files": listing,
              "bytes": sum(f["size"] for f in listing), "status": "staged", "commit": None}
    if dry_run:
        log(f"dry run: would push {len(listing)} files ({_size(report['bytes'])}) to {repo_type} {repo}@{revision} "
            f"({'private' if private else 'public'}) as one commit: {summary}")
        for f in listing:
            log(f"  {f['path']}  {_size(f['size'])}")
        log(f"staged in {staged}")
        return report
    token = hub_token()
    if not token:
        raise InputError("HF_TOKEN", None, "no Hugging Face token: set HF_TOKEN or log in with `hf auth login`")
    try:
        result = upload(staged, listing, repo, repo_type, private=private, private_explicit=private_explicit,
                        revision=revision, summary=summary, description=description, token=token, log=log)
    except InputError:
        raise
    except Exception as exc:  # the client's errors, without a token in them
        raise InputError(repo, None, _scrubbed(f"push failed: {type(exc).__name__}: {exc}", token)
                         .replace("\n", " ")) from None
    report.update(status="pushed", commit=result)
    data = load_state(state)
    data[key] = {"digest": report["digest"], "commit": result["oid"], "url": result["url"],
                 "pushed_at": now_iso(),
                 "files": len(listing), "source": str(src)}
    write_state(state, data)
    log(f"pushed {len(listing)} files ({_size(report['bytes'])}) to {repo_type} {repo}@{revision} in one commit "
        f"{result['oid'][:12]}")
    if result["deleted"]:
        log(f"deleted {len(result['deleted'])} files no longer in the folder: {', '.join(result['deleted'])}")
    return report


def _source_digest(kind: str, src: Path) -> str | None:
    """digest() of the files a folder would publish, read in place; None when they cannot be listed
    (the full checks will then say why)."""
    try:
        if kind == "dataset":
            files = sorted(orjson.loads((src / "manifest.json").read_bytes())["files"]) + ["manifest.json"]
        else:
            files = model_files(src)
        return digest([{"path": f, "sha256": sha256_file(src / f)} for f in files])
    except (OSError, ValueError, KeyError, TypeError, InputError):
        return None


def load_state(path: Path) -> dict:
    """What was pushed (repository@revision -> digest, commit, url, ...); a corrupt state file is an
    error naming it, never a silent reset that would push everything again as if new."""
    return read_state(path, {})
