"""secai-push: checks (card, manifest hashes, secrets, model validation), the staged folder and
--dry-run, and real pushes through huggingface_hub to a loopback Hub (tests/loopback.py), asserting
the repository, branch, commit message and file bytes the server received."""

from __future__ import annotations

import hashlib
import socket
import sys
import types
from pathlib import Path

import orjson
import pytest
from conftest import run_command
from loopback import FakeHub

from secai.records import dumps
from secai.commands.push import Push
from secai.commands.split import Split

TOKEN = "hf_" + "T0k3n" * 7           # looks like a real token, so a leak would be recognisable
SHA = "4f1c2a9b7e3d5f60718293a4b5c6d7e8f9a0b1c2"


def example(finding: int, n: int = 0, commit: str = SHA, text: str = "use parameterized queries") -> dict:
    fid = hashlib.sha256(f"finding {finding}".encode()).hexdigest()[:32]
    return {
        "schema": "example/1", "id": hashlib.sha256(f"{fid} {n}".encode()).hexdigest()[:32], "stage": "analysis",
        "messages": [{"role": "system", "content": "You are a security engineer."},
                     {"role": "user", "content": f"Finding {finding}: SQL injection in app.py"},
                     {"role": "assistant", "content": f"Summary of finding {finding}: {text}."}],
        "metadata": {"finding_id": fid, "rule_id": f"rule-{finding % 3}", "tool": "semgrep", "category": "sast",
                     "severity": "high",
                     "provenance": {"backend": "kb", "prompt_version": "1", "kb_version": "1", "secai_version": "0.1.0",
                                    "commit": commit, "run_id": "4242"}},
    }


def make_dataset(tmp_path: Path, out: str = "dataset", findings=range(8), *argv) -> Path:
    src = tmp_path / f"{out}.jsonl"
    src.write_bytes(b"".join(dumps(example(f, n)) for f in findings for n in range(2)))
    code, _, err = run_command(Split, ["-q", str(src), "-o", str(tmp_path / out), *argv], raw=True)
    assert code == 0, err
    return tmp_path / out


@pytest.fixture
def dataset(tmp_path):
    return make_dataset(tmp_path)


@pytest.fixture
def hub(monkeypatch, tmp_path):
    """A loopback Hub that huggingface_hub talks to (HF_ENDPOINT), with HF_TOKEN set."""
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)     # another test may have set offline mode
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)  # LFS over the basic transfer (no Xet CAS here)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-stored-token"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    with FakeHub(TOKEN) as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        yield server


def push(tmp_path, *argv):
    """Run secai-push in tmp_path (its staging and state go under tmp_path/build)."""
    code, out, err = run_command(Push, list(argv), cwd=tmp_path, raw=True)
    report = orjson.loads(out) if out.strip() else None
    return code, report, err


def tree(d: Path) -> dict[str, bytes]:
    return {p.relative_to(d).as_posix(): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def assert_no_token(*texts):
    for t in texts:
        assert TOKEN not in t


# ---------------------------------------------------------------- dry run and checks

def test_dry_run_stages_the_exact_folder_and_lists_it_without_network_or_token(tmp_path, dataset, monkeypatch):
    def refuse(self, address, *a, **kw):
        raise AssertionError(f"network access attempted: {address!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    code, report, err = push(tmp_path, "dataset", str(dataset), "--repo", "octo/findings", "--dry-run")
    assert code == 0, err
    manifest = orjson.loads((dataset / "manifest.json").read_bytes())
    expected = sorted(manifest["files"]) + ["manifest.json"]
    assert [f["path"] for f in report["files"]] == expected
    staged = Path(tmp_path / report["staged"])
    assert staged == tmp_path / "build" / "push" / "dataset-octo--findings"
    got = tree(staged)
    assert got.pop(".secai-staged")  # the marker that lets a later push replace this folder
    assert got == {name: (dataset / name).read_bytes() for name in expected}
    for f in report["files"]:
        assert f["sha256"] == hashlib.sha256(got[f["path"]]).hexdigest() and f["size"] == len(got[f["path"]])
    assert report["status"] == "staged" and report["commit"] is None and report["private"] is True
    # provenance: counts, source commit, CI run, secai version and every file's hash
    msg, desc = report["commit_message"], report["commit_description"]
    assert f"{manifest['examples']} examples" in msg and SHA[:12] in msg and "secai 0.1.0" in msg
    assert SHA in desc and "4242" in desc and all(f["sha256"] in desc for f in report["files"])
    assert "would push" in err and all(name in err for name in expected)


def test_a_dataset_without_its_card_is_refused(tmp_path, dataset):
    (dataset / "README.md").unlink()
    code, report, err = push(tmp_path, "dataset", str(dataset), "--repo", "octo/findings", "--dry-run")
    assert code == 1 and report is None
    assert err.strip() == f"secai-push: error: {dataset / 'README.md'}: missing: a folder is published only " \
                          "with its card (README.md)"
    assert not (tmp_path / "build" / "push").exists()


def test_a_card_without_front_matter_or_a_changed_file_is_refused(tmp_path, dataset):
    card = dataset / "README.md"
    original = card.read_bytes()
    card.write_bytes(original.split(b"---\n", 2)[2])
    code, _, err = push(tmp_path, "dataset", str(dataset), "--repo", "octo/findings", "--dry-run")
    assert code == 1 and "no YAML front matter" in err and len(err.strip().splitlines()) == 1
    card.write_bytes(original)
    with open(dataset / "train.jsonl", "ab") as fh:
        fh.write(b"\n")
    code, _, err = push(tmp_path, "dataset", str(dataset), "--repo", "octo/findings", "--dry-run")
    assert code == 1 and "train.jsonl: its SHA-256 differs from manifest.json" in err


def test_a_dataset_failing_the_secret_check_is_refused(tmp_path, dataset, hub):
    """A secret in a message (even with the manifest's hashes made to match) stops the push before
    anything is staged or sent."""
    secret = "ghp_" + "a1B2c3D4e5F6" * 3
    lines = (dataset / "train.jsonl").read_bytes().splitlines(keepends=True)
    rec = orjson.loads(lines[1])
    rec["messages"][2]["content"] += f" The token was {secret}."
    lines[1] = dumps(rec)
    (dataset / "train.jsonl").write_bytes(b"".join(lines))
    manifest = orjson.loads((dataset / "manifest.json").read_bytes())
    manifest["files"]["train.jsonl"] = hashlib.sha256((dataset / "train.jsonl").read_bytes()).hexdigest()
    (dataset / "manifest.json").write_bytes(orjson.dumps(manifest))
    code, report, err = push(tmp_path, "dataset", str(dataset), "--repo", "octo/findings")
    assert code == 1 and report is None
    assert err.strip() == (f"secai-push: error: {dataset / 'train.jsonl'}:2: messages[2] (assistant): secret pattern "
                           "github-token found; a dataset that fails the secret-redaction check is not published")
    assert secret not in err
    assert hub.requests == [] and not (tmp_path / "build").exists()


def test_usage_and_repository_id_errors(tmp_path, dataset):
    code, _, err = push(tmp_path, "dataset", str(dataset), "--private", "--public")
    assert code == 2 and "not allowed with" in err
    code, _, err = push(tmp_path, "dataset", str(dataset), "--repo", "no-owner", "--dry-run")
    assert code == 1 and "not a Hub repository id" in err
    code, _, err = push(tmp_path, "dataset", str(dataset), "--dry-run")
    assert code == 2 and "no --repo and no push.dataset_repo" in err  # a missing flag: a usage error
    code, _, err = push(tmp_path, "dataset", str(tmp_path / "absent"), "--repo", "octo/x", "--dry-run")
    assert code == 1 and "not a directory" in err


# ---------------------------------------------------------------- pushes to the loopback Hub

def test_push_creates_the_repository_and_sends_the_folder_with_its_card_in_one_commit(tmp_path, dataset, hub):
    code, report, err = push(tmp_path, "dataset", str(dataset), "--repo", "octo/findings")
    assert code == 0, err
    repo = hub.repos[("dataset", "octo/findings")]
    assert repo["private"] is True and repo["created"]["type"] == "dataset"
    assert len(hub.commits) == 1
    commit = hub.commits[0]
    assert commit["header"]["summary"] == report["commit_message"]
    assert commit["header"]["description"] == report["commit_description"]
    assert SHA in commit["header"]["description"]
    # the branch now holds exactly the staged folder (card included) plus the Hub's .gitattributes
    received = hub.files("dataset", "octo/findings")
    assert received.pop(".gitattributes")
    staged = tree(tmp_path / report["staged"])
    staged.pop(".secai-staged")
    assert received == staged == {n: (dataset / n).read_bytes() for n in staged}
    assert "README.md" in received and {op["value"]["path"] for op in commit["ops"]} == set(staged)
    assert report["status"] == "pushed" and report["commit"]["oid"] == commit["oid"]
    calls = [p for _, p in hub.requests]
    assert "/api/repos/create" in calls and "/api/validate-yaml" in calls
    assert "/api/datasets/octo/findings/preupload/main" in calls and "/api/datasets/octo/findings/commit/main" in calls
    assert set(hub.auth_headers) == {f"Bearer {TOKEN}"}
    state = (tmp_path / "build" / "state" / "push.json").read_text()
    assert_no_token(err, orjson.dumps(report).decode(), state, *(b.decode() for b in staged.values()))


def test_second_push_deletes_stale_files_and_an_unchanged_folder_is_not_sent(tmp_path, hub):
    first = make_dataset(tmp_path, "with-test", range(12), "--test", "0.3")
    assert (first / "test.jsonl").exists()
    code, _, err = push(tmp_path, "dataset", str(first), "--repo", "octo/findings", "--skip-unchanged")
    assert code == 0, err
    second = make_dataset(tmp_path, "without-test", range(12))
    code, report, err = push(tmp_path, "dataset", str(second), "--repo", "octo/findings", "--skip-unchanged")
    assert code == 0, err
    assert len(hub.commits) == 2
    ops = {(op["key"], op["value"]["path"]) for op in hub.commits[1]["ops"]}
    assert ("deletedFile", "test.jsonl") in ops and report["commit"]["deleted"] == ["test.jsonl"]
    assert hub.commits[1]["header"].get("parentCommit") == hub.commits[0]["oid"]
    received = hub.files("dataset", "octo/findings")
    assert "test.jsonl" not in received and received["train.jsonl"] == (second / "train.jsonl").read_bytes()
    n = len(hub.requests)
    code, report, err = push(tmp_path, "dataset", str(second), "--repo", "octo/findings", "--skip-unchanged")
    assert code == 0 and report["status"] == "unchanged" and "nothing pushed" in err
    assert len(hub.requests) == n and len(hub.commits) == 2


def test_a_private_push_to_a_public_repository_is_refused(tmp_path, dataset, hub):
    code, _, err = push(tmp_path, "dataset", str(dataset), "--repo", "octo/open", "--public")
    assert code == 0, err
    assert hub.repos[("dataset", "octo/open")]["private"] is False
    code, report, err = push(tmp_path, "dataset", str(dataset), "--repo", "octo/open", "--private")
    assert code == 1 and report is None
    assert "octo/open: the dataset repository is public and this push is private (--private)" in err
    assert len(hub.commits) == 1


def test_revision_commits_to_a_new_branch(tmp_path, dataset, hub):
    code, report, err = push(tmp_path, "dataset", str(dataset), "--repo", "octo/findings", "--revision", "nightly")
    assert code == 0, err
    repo = hub.repos[("dataset", "octo/findings")]
    assert hub.commits[0]["branch"] == "nightly" and len(repo["branches"]["main"]) == 1  # main: the initial commit
    assert "manifest.json" in hub.files("dataset", "octo/findings", "nightly")
    assert ("POST", "/api/datasets/octo/findings/branch/nightly") in hub.requests


def test_no_token_is_a_clear_error_and_a_stored_login_works(tmp_path, dataset, hub, monkeypatch):
    import huggingface_hub.constants as constants

    monkeypatch.delenv("HF_TOKEN")
    code, _, err = push(tmp_path, "dataset", str(dataset), "--repo", "octo/findings")
    assert code == 1 and err.strip() == ("secai-push: error: HF_TOKEN: no Hugging Face token: set HF_TOKEN or "
                                         "log in with `hf auth login`")
    assert hub.requests == []
    stored = tmp_path / "stored-token"
    stored.write_text(TOKEN)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(stored))
    code, _, err = push(tmp_path, "dataset", str(dataset), "--repo", "octo/findings")
    assert code == 0, err
    assert set(hub.auth_headers) == {f"Bearer {TOKEN}"} and len(hub.commits) == 1


def test_a_rejected_token_is_one_line_without_the_token(tmp_path, dataset, hub, monkeypatch):
    wrong = "hf_" + "Wr0ng" * 7
    monkeypatch.setenv("HF_TOKEN", wrong)
    code, _, err = push(tmp_path, "dataset", str(dataset), "--repo", "octo/findings")
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert err.startswith("secai-push: error: octo/findings: push failed:") and "401" in err
    assert wrong not in err and not hub.commits


# ---------------------------------------------------------------- models

def make_model(d: Path) -> Path:
    (d / "adapters").mkdir(parents=True)
    (d / "README.md").write_text("---\nlicense: apache-2.0\nbase_model: allenai/OLMo-2-0425-1B\nlibrary_name: mlx\n"
                                 "tags: [lora, security]\n---\n\n# olmo2-secai\n\nA LoRA adapter.\n")
    meta = {"schema": "model/1", "name": "olmo2-secai", "stage": "analysis", "path": f"fine-tuned/{d.name}", "run_id": "r1",
            "base_model": {"path": "base/OLMo-2-1B-mlx-q4", "name": "OLMo-2-1B-mlx-q4",
                           "hf_id": "allenai/OLMo-2-0425-1B", "content_hash": "b" * 64, "test_model": False},
            "dataset": {"path": "build/datasets/analysis", "name": "secai security findings",
                        "manifest_sha256": "d" * 64, "examples": 16},
            "training": {"steps": 30, "epochs": 3}, "source_commit": SHA}
    (d / "metadata.json").write_text(orjson.dumps(meta).decode())
    (d / "training_log.jsonl").write_text('{"iter": 10, "train_loss": 2.5}\n{"iter": 20, "train_loss": 2.1}\n')
    (d / "adapters" / "adapter_config.json").write_text('{"fine_tune_type": "lora", "num_layers": 2}')
    (d / "adapters" / "adapters.safetensors").write_bytes(b"\x00\x01weights" * 4096)
    (d / "adapters" / "0000010_adapters.safetensors").write_bytes(b"\x00checkpoint" * 100)
    return d


@pytest.fixture
def lora_stub(monkeypatch):
    """secai.training.run as a stub whose validate accepts (the model folders here are not trained models;
    secai.training.run's own tests check its validate). Returns the stub to change validate."""
    import secai

    fake = types.ModuleType("secai.training.run")
    fake.calls = []
    fake.validate = lambda path: fake.calls.append(Path(path)) or []
    monkeypatch.setitem(sys.modules, "secai.training.run", fake)
    monkeypatch.setattr(secai, "lora", fake, raising=False)
    return fake


def test_model_push_sends_weights_over_lfs_and_the_card_in_the_same_commit(tmp_path, hub, lora_stub):
    model = make_model(tmp_path / "olmo2-secai")
    code, report, err = push(tmp_path, "model", str(model), "--repo", "octo/olmo2-secai", "--public")
    assert code == 0, err
    assert [f["path"] for f in report["files"]] == ["README.md", "adapters/adapter_config.json",
                                                   "adapters/adapters.safetensors", "metadata.json",
                                                   "training_log.jsonl"]  # no intermediate checkpoint
    assert hub.repos[("model", "octo/olmo2-secai")]["private"] is False
    (commit,) = hub.commits
    kinds = {op["value"]["path"]: op["key"] for op in commit["ops"]}
    assert kinds["adapters/adapters.safetensors"] == "lfsFile" and kinds["README.md"] == "file"
    weights = (model / "adapters" / "adapters.safetensors").read_bytes()
    assert hub.lfs == {hashlib.sha256(weights).hexdigest(): weights}
    received = hub.files("model", "octo/olmo2-secai")
    received.pop(".gitattributes")
    assert received == {f["path"]: (model / f["path"]).read_bytes() for f in report["files"]}
    assert "olmo2-secai" in commit["header"]["summary"] and SHA[:12] in commit["header"]["summary"]
    desc = commit["header"]["description"]
    assert "base model: hf_id allenai/OLMo-2-0425-1B, name OLMo-2-1B-mlx-q4" in desc
    assert f"manifest_sha256 {'d' * 64}" in desc and "training steps: 30" in desc
    assert "base/OLMo-2-1B-mlx-q4" not in desc and "build/datasets" not in desc  # no paths in a published commit
    calls = [p for _, p in hub.requests]
    assert "/octo/olmo2-secai.git/info/lfs/objects/batch" in calls and "/lfs-verify" in calls
    assert lora_stub.calls == [model]
    # unchanged since that push: neither validated again (a model's validation may run it) nor sent
    n = len(hub.requests)
    code, report, err = push(tmp_path, "model", str(model), "--repo", "octo/olmo2-secai", "--public", "--skip-unchanged")
    assert code == 0 and report["status"] == "unchanged" and report["commit"]["oid"] == commit["oid"]
    assert lora_stub.calls == [model] and len(hub.requests) == n
    (model / "training_log.jsonl").write_text('{"iter": 30, "train_loss": 1.9}\n')  # changed: checked and sent
    code, report, err = push(tmp_path, "model", str(model), "--repo", "octo/olmo2-secai", "--public", "--skip-unchanged")
    assert code == 0, err
    assert report["status"] == "pushed" and len(lora_stub.calls) == 2 and len(hub.commits) == 2
    assert [op["value"]["path"] for op in hub.commits[1]["ops"]] == ["training_log.jsonl"]  # the rest unchanged


def test_model_checks_card_metadata_weights_and_the_lora_validate_hook(tmp_path, lora_stub):
    model = make_model(tmp_path / "m")
    args = ["model", str(model), "--repo", "octo/m", "--dry-run"]
    fake = lora_stub
    fake.validate = lambda path: [f"{Path(path).name}/adapters/adapter_config.json: no lora_parameters"]
    code, _, err = push(tmp_path, *args)
    assert code == 1 and "not a valid model (secai-lora validate): m/adapters/adapter_config.json: no lora_parameters" in err
    fake.validate = lambda path: []
    code, report, err = push(tmp_path, *args)
    assert code == 0 and report["status"] == "staged"
    (model / "metadata.json").unlink()
    code, _, err = push(tmp_path, *args)
    assert code == 1 and "metadata.json: missing" in err
    make_model(tmp_path / "n")
    (tmp_path / "n" / "adapters" / "adapters.safetensors").unlink()
    (tmp_path / "n" / "adapters" / "0000010_adapters.safetensors").unlink()
    code, _, err = push(tmp_path, "model", str(tmp_path / "n"), "--repo", "octo/n", "--dry-run")
    assert code == 1 and "no *.safetensors" in err


@pytest.mark.parametrize("name", ["metadata.json", "eval.json"])
def test_a_model_that_records_a_local_path_is_refused(tmp_path, lora_stub, name):
    """metadata.json and eval.json are published: an absolute path in either (a model trained before
    paths were recorded relative to the models dir) stops the push before anything is staged."""
    model = make_model(tmp_path / "m")
    path = model / name
    record = orjson.loads(path.read_bytes()) if path.is_file() else {"schema": "eval/1", "loss": {"adapter": 1.0}}
    record["data"] = ["fine", {"deep": "/srv/ml/secai/build/datasets/analysis"}]
    path.write_bytes(orjson.dumps(record))
    code, report, err = push(tmp_path, "model", str(model), "--repo", "octo/m", "--dry-run")
    assert code == 1 and report is None and len(err.strip().splitlines()) == 1
    assert f"{name} records the local path '/srv/ml/secai/build/datasets/analysis'" in err
    assert not (tmp_path / "build" / "push").exists()


def test_a_model_that_names_a_home_folder_is_refused(tmp_path, lora_stub):
    """A user's home folder in a published file is personal data (secai.personal): refused too."""
    model = make_model(tmp_path / "m")
    record = orjson.loads((model / "metadata.json").read_bytes())
    record["data"] = "/Users/dev/secai/build/datasets/analysis"
    (model / "metadata.json").write_bytes(orjson.dumps(record))
    code, report, err = push(tmp_path, "model", str(model), "--repo", "octo/m", "--dry-run")
    assert code == 1 and report is None and "home-directory" in err and "/Users/dev" not in err.split(":", 3)[-1]
    assert not (tmp_path / "build" / "push").exists()


def test_the_real_lora_validate_is_called_and_its_refusal_stops_the_push(tmp_path, hub):
    """With secai.training.run's own validate: a folder that is not a trained model/1 — this fake one — is
    refused before anything is staged or sent."""
    model = make_model(tmp_path / "olmo2-secai")
    code, report, err = push(tmp_path, "model", str(model), "--repo", "octo/olmo2-secai")
    assert code == 1 and report is None and len(err.strip().splitlines()) == 1
    assert err.startswith(f"secai-push: error: {model}: not a valid model (secai-lora validate): ")
    assert hub.requests == [] and not (tmp_path / "build" / "push").exists()
