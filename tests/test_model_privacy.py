"""What a fine-tuned model publishes names no local place: metadata.json, eval.json, the card and
adapters/adapter_config.json record paths relative to the models dir, the project or the model's
own folder (secai.training.store.portable), never an absolute path, the home folder or the user
name; stage 2 (`--from-adapter` the printed metadata, as the Makefile does), eval's defaults, the
forgetting check and validate still find everything from them, also once the whole tree has moved."""

from __future__ import annotations

import getpass
import re
import shutil
from pathlib import Path

import orjson
import pytest

from conftest import run_command
from test_lora import FAST, write_dataset

pytestmark = pytest.mark.usefixtures("no_network")

from secai.commands.lora import Lora  # noqa: E402
from secai.records import strings  # noqa: E402
from secai.training import store  # noqa: E402

PUBLISHED = ("metadata.json", "eval.json", "README.md", "adapters/adapter_config.json")


def lora(*argv: str) -> str:
    code, out, err = run_command(Lora, list(argv), raw=True)
    assert code == 0, err
    return out


def use_store(monkeypatch, d: Path) -> None:
    monkeypatch.setenv("SECAI_MODELS_DIR", str(d))
    store.config.load.cache_clear()


@pytest.fixture
def tree(tiny_model, tmp_path, monkeypatch):
    """A models dir with the base model in it, datasets beside it (outside the models dir and the
    project), and the two stages trained and evaluated the way the Makefile chains them."""
    models = tmp_path / "site" / "models"
    shutil.copytree(tiny_model, models / "base" / "tiny-olmo2")
    use_store(monkeypatch, models)
    data = tmp_path / "site" / "data"
    write_dataset(data / "analysis", "analysis")
    write_dataset(data / "codefix", "codefix", n_train=24, n_valid=8)
    build = tmp_path / "site" / "build"
    build.mkdir()
    base = str(models / "base" / "tiny-olmo2")
    (build / "analysis.json").write_text(lora("train", "--stage", "analysis", "--data", str(data / "analysis"),
                                              "--base-model", base, "--name", "s1", *FAST))
    (build / "codefix.json").write_text(lora("train", "--stage", "codefix", "--data", str(data / "codefix"),
                                             "--base-model", base, "--from-adapter", str(build / "analysis.json"),
                                             "--name", "s2", *FAST))
    for stage in ("analysis", "codefix"):
        lora("eval", "--adapter", str(build / f"{stage}.json"), "--samples", "2", "--max-tokens", "8",
             "-o", str(build / f"eval-{stage}.json"))
    yield tmp_path / "site"
    store.config.load.cache_clear()


def test_published_files_name_no_local_place(tree, tmp_path):
    user = re.compile(rf"(?<![A-Za-z0-9]){re.escape(getpass.getuser())}(?![A-Za-z0-9])")
    for name in ("s1", "s2"):
        d = tree / "models" / "fine-tuned" / name
        for rel in PUBLISHED:
            text = (d / rel).read_text(encoding="utf-8")
            where = f"{name}/{rel}"
            assert str(tmp_path) not in text and str(Path.home()) not in text, where
            assert not user.search(text), (where, user.pattern)
            if rel.endswith(".json"):
                absolute = [s for s in strings(orjson.loads(text)) if Path(s).is_absolute() or s.startswith("~")]
                assert not absolute, (where, absolute)


def test_paths_are_recorded_relative_to_the_store_or_the_model(tree):
    s1, s2 = (orjson.loads((tree / "models" / "fine-tuned" / n / "metadata.json").read_bytes()) for n in ("s1", "s2"))
    assert (s1["path"], s1["base_model"]["path"]) == ("fine-tuned/s1", "base/tiny-olmo2")
    assert s1["dataset"]["path"] == "../../../data/analysis"  # beside the store: from the model's folder
    assert s2["from_adapter"] == {**s2["from_adapter"], "path": "fine-tuned/s1", "dataset": "../../../data/analysis"}
    assert orjson.loads((tree / "build" / "codefix.json").read_bytes()) == s2  # the printed record is the metadata
    config = orjson.loads((tree / "models" / "fine-tuned" / "s2" / "adapters" / "adapter_config.json").read_bytes())
    assert config["model"] == "base/tiny-olmo2"  # the test model has no Hugging Face id
    report = orjson.loads((tree / "build" / "eval-codefix.json").read_bytes())
    assert (report["adapter"], report["base_model"], report["data"]) == ("fine-tuned/s2", "base/tiny-olmo2", "../../../data/codefix")
    # eval found the stage-1 adapter and its dataset from the recorded paths: the forgetting check ran
    assert report["forgetting"]["stage1_model"] == "s1" and report["forgetting"]["data"] == "../../../data/analysis"
    assert report == orjson.loads((tree / "models" / "fine-tuned" / "s2" / "eval.json").read_bytes())


def test_a_moved_tree_still_finds_its_base_and_data(tree, tmp_path, monkeypatch):
    moved = tmp_path / "elsewhere" / "copy"
    shutil.copytree(tree, moved)
    shutil.rmtree(tree)
    use_store(monkeypatch, moved / "models")
    code, _, err = run_command(Lora, ["validate", str(moved / "models" / "fine-tuned" / "s2")], raw=True)
    assert code == 0, err
    lora("eval", "--adapter", str(moved / "build" / "codefix.json"), "--samples", "1", "--max-tokens", "4")
    report = orjson.loads((moved / "models" / "fine-tuned" / "s2" / "eval.json").read_bytes())
    assert report["forgetting"]["stage1_model"] == "s1" and report["data"] == "../../../data/codefix"


def test_a_path_outside_every_known_place_is_recorded_by_name(tmp_path, monkeypatch):
    use_store(monkeypatch, tmp_path / "models")
    home = Path.home()
    assert store.portable(home / "datasets" / "analysis", near=Path("/srv/models/fine-tuned/m")) == "analysis"
    # the way from the model to it would name the home folder: by name only
    assert store.portable(home / "data", near=home.parent / "other" / "fine-tuned" / "m") == "data"
    assert store.portable(tmp_path / "models" / "base" / "b") == "base/b"
    assert store.local("base/b") is None  # not there: nothing guessed
    (tmp_path / "models" / "base" / "b").mkdir(parents=True)
    assert store.local("base/b") == tmp_path / "models" / "base" / "b"
    store.config.load.cache_clear()
