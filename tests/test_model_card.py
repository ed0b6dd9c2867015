"""The model card secai-lora writes, read the way the Hub reads it (huggingface_hub's ModelCard and
ModelCardData, offline): base_model only for an exact base on the Hub, with base_model_relation
adapter; model-index holding eval.json's numbers; the loss plot embedded and published beside it;
and the "Use" commands run exactly as the card prints them, on the tiny test model."""

from __future__ import annotations

import copy
import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
import yaml

from conftest import run_command
from test_lora import FAST, write_dataset

pytestmark = pytest.mark.usefixtures("no_network")

from huggingface_hub import ModelCard, ModelCardData  # noqa: E402
from huggingface_hub.repocard_data import model_index_to_eval_results  # noqa: E402

from secai.commands.lora import Lora  # noqa: E402
from secai.publishing import hub  # noqa: E402
from secai.training import card as model_card, store  # noqa: E402


def lora(*argv: str) -> None:
    code, _, err = run_command(Lora, list(argv), raw=True)
    assert code == 0, err


@pytest.fixture(scope="module")
def site(tiny_model, tmp_path_factory):
    """A model store with the tiny base in it, and stage 1 and stage 2 trained and evaluated there."""
    root = tmp_path_factory.mktemp("site")
    shutil.copytree(tiny_model, root / "models" / "base" / "tiny-olmo2")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SECAI_MODELS_DIR", str(root / "models"))
        store.config.load.cache_clear()
        base = str(root / "models" / "base" / "tiny-olmo2")
        write_dataset(root / "data" / "analysis", "analysis")
        write_dataset(root / "data" / "codefix", "codefix", n_train=24, n_valid=8)
        lora("train", "--stage", "analysis", "--data", str(root / "data" / "analysis"), "--base-model", base, "--name", "s1", *FAST)
        lora("train", "--stage", "codefix", "--data", str(root / "data" / "codefix"), "--base-model", base,
             "--from-adapter", str(root / "models" / "fine-tuned" / "s1"), "--name", "s2", *FAST)
        for name in ("s1", "s2"):
            lora("eval", "--adapter", str(root / "models" / "fine-tuned" / name), "--samples", "2", "--max-tokens", "8")
        yield root / "models" / "fine-tuned"
    store.config.load.cache_clear()


def front(text: str) -> dict:
    return yaml.safe_load(text.split("---\n")[1])


def bash_blocks(text: str) -> list[list[str]]:
    blocks = text.split("```bash\n")[1:]
    return [b.split("\n```")[0].splitlines() for b in blocks]


def use_section(text: str) -> str:
    return text.split("\n## Use\n", 1)[1]


# ---------------------------------------------------------------- what the Hub reads

def test_the_card_metadata_is_what_huggingface_hub_reads(site):
    d = site / "s2"
    text = (d / "README.md").read_text()
    meta, report = (orjson.loads((d / f).read_bytes()) for f in ("metadata.json", "eval.json"))
    data = ModelCard(text).data
    assert isinstance(data, ModelCardData) and data.to_dict() == front(text)  # every key round-trips
    assert (data.library_name, data.license, data.pipeline_tag) == ("mlx", "apache-2.0", "text-generation")
    assert {"mlx", "lora", "adapter", "security", "codefix", "test-model"} <= set(data.tags)
    # the test model is on no Hub: no base_model (nor a relation to one), and the text says why
    assert data.base_model is None and "base_model_relation" not in front(text)
    assert "names no `base_model`" in text and "Test device, not a useful model" in text
    name, results = model_index_to_eval_results(front(text)["model-index"])
    assert name == "s2" == data.model_name and len(data.eval_results) == len(results) == 6
    got = {r.metric_name: (r.metric_type, r.metric_value) for r in results}
    assert got == {
        "held-out loss (adapter)": ("loss", report["loss"]["adapter"]),
        "held-out loss (base model alone)": ("loss", report["loss"]["base"]),
        "held-out perplexity (adapter)": ("perplexity", report["perplexity"]["adapter"]),
        "held-out perplexity (base model alone)": ("perplexity", report["perplexity"]["base"]),
        "stage-1 held-out loss (this adapter; forgetting check)": ("loss", report["forgetting"]["after"]),
        "stage-1 held-out loss (stage-1 adapter s1)": ("loss", report["forgetting"]["before"]),
    }
    held_out = [r for r in results if r.metric_name.startswith("held-out")]
    assert {(r.task_type, r.dataset_name, r.dataset_type, r.dataset_split) for r in held_out} == {
        ("text-generation", meta["dataset"]["name"], "codefix", "validation")}
    assert {r.dataset_name for r in results if r.metric_name.startswith("stage-1")} == {"analysis"}


def test_the_loss_plot_is_embedded_and_published_beside_the_card(site, tmp_path):
    for name in ("s1", "s2"):
        d = site / name
        assert "![Training and validation loss by step](loss.png)" in (d / "README.md").read_text()
        assert (d / "loss.png").read_bytes().startswith(b"\x89PNG")
    report = hub.publish("model", site / "s1", "octo/s1", dry_run=True, staging=tmp_path / "staged", state=tmp_path / "state.json")
    assert {"README.md", "loss.png", "eval.json"} <= {f["path"] for f in report["files"]}
    assert (tmp_path / "staged" / "loss.png").read_bytes() == (site / "s1" / "loss.png").read_bytes()


def test_a_card_written_right_after_training_has_its_plot_and_no_model_index(site, tmp_path):
    meta = orjson.loads((site / "s1" / "metadata.json").read_bytes())
    text = model_card.card(meta, None, model_card.surroundings(site / "s1", store.local(meta["base_model"]["path"])))
    assert "model-index" not in front(text) and "(loss.png)" in text
    assert ModelCard(text).data.eval_results is None


# ---------------------------------------------------------------- the Use commands, as written

def run_lines(lines: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(["bash", "-euo", "pipefail", "-c", "\n".join(lines)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_the_use_commands_run_as_written(site, tmp_path):
    name = "s2"
    d = site / name
    anywhere, here = bash_blocks(use_section((d / "README.md").read_text()))
    # in an empty folder: the download (OWNER/NAME is what the card says to fill in; the copy stands
    # in for the Hub), then every other line exactly as printed
    assert anywhere[0] == f"hf download OWNER/NAME --local-dir {name}"
    assert anywhere[1] == "python -m secai.training.tinymodel tiny-olmo2 --seed 0"
    empty = tmp_path / "empty"
    empty.mkdir()
    shutil.copytree(d, empty / name)
    proc = run_lines(anywhere[1:], empty)
    assert proc.returncode == 0, proc.stderr
    assert "Generation: 200 tokens" in proc.stdout
    assert store.identity(empty / "tiny-olmo2")["content_hash"] == orjson.loads((d / "metadata.json").read_bytes())["base_model"]["content_hash"]
    # where secai-lora wrote it: from the model's own folder
    assert here == [f"mlx_lm.generate --model ../../base/tiny-olmo2 --adapter-path adapters --prompt "
                    f"{shlex.quote(model_card.USE_PROMPT['codefix'])} --max-tokens 200"]
    proc = run_lines(here, d)
    assert proc.returncode == 0, proc.stderr
    assert "Generation: 200 tokens" in proc.stdout
    # the download line is the hf command's own form
    proc = run_lines(["hf download --help"], tmp_path)
    assert proc.returncode == 0 and "--local-dir" in proc.stdout


# ---------------------------------------------------------------- other bases

def with_base(meta: dict, **base) -> dict:
    meta = copy.deepcopy(meta)
    meta["base_model"].update(base)
    return meta


MLX_Q4 = {"bits": 4, "group_size": 64}


def test_an_exact_hub_base_is_the_base_model_of_an_adapter(site):
    meta = orjson.loads((site / "s1" / "metadata.json").read_bytes())
    report = orjson.loads((site / "s1" / "eval.json").read_bytes())
    meta = with_base(meta, name="OLMo-2-0425-1B-4bit", hf_id="mlx-community/OLMo-2-0425-1B-4bit",
                     converted_from="allenai/OLMo-2-0425-1B", quantization=MLX_Q4, test_model=False)
    text = model_card.card(meta, report, {"plot": True, "base_way": "../../base/OLMo-2-0425-1B-4bit"})
    data = ModelCard(text).data
    assert data.base_model == "mlx-community/OLMo-2-0425-1B-4bit" and data.base_model_relation == "adapter"
    assert "test-model" not in data.tags and data.to_dict() == front(text)
    assert "a 4-bit (group size 64) MLX conversion of [`allenai/OLMo-2-0425-1B`]" in text
    anywhere, here = bash_blocks(use_section(text))
    assert anywhere[1:] == [f"mlx_lm.generate --model mlx-community/OLMo-2-0425-1B-4bit --adapter-path s1/adapters "
                            f"--prompt {shlex.quote(model_card.USE_PROMPT['analysis'])} --max-tokens 200"]
    assert here[0].startswith("mlx_lm.generate --model ../../base/OLMo-2-0425-1B-4bit --adapter-path adapters ")


def test_a_local_conversion_names_no_base_model_and_the_card_makes_it_again(site):
    meta = orjson.loads((site / "s1" / "metadata.json").read_bytes())
    local = with_base(meta, name="OLMo-2-1B-mlx-q4", hf_id=None, converted_from="allenai/OLMo-2-0425-1B",
                      quantization=MLX_Q4, test_model=False)
    older = with_base(meta, name="OLMo-2-1B-mlx-q4", hf_id="allenai/OLMo-2-0425-1B", test_model=False)
    for key in ("converted_from", "quantization"):  # metadata from before they were recorded: hf_id was the source
        older["base_model"].pop(key)
    for m in (local, older):
        text = model_card.card(m, None, {})
        data = ModelCard(text).data
        assert data.base_model is None and "base_model_relation" not in front(text)
        assert "is not what the adapter was trained on, so this card names no `base_model`" in text
    anywhere, = bash_blocks(use_section(model_card.card(local, None, {})))
    convert = "mlx_lm.convert --hf-path allenai/OLMo-2-0425-1B --mlx-path OLMo-2-1B-mlx-q4 -q --q-bits 4 --q-group-size 64"
    assert anywhere[1:3] == [convert, f"mlx_lm.generate --model OLMo-2-1B-mlx-q4 --adapter-path s1/adapters --prompt "
                                      f"{shlex.quote(model_card.USE_PROMPT['analysis'])} --max-tokens 200"]
    from mlx_lm.convert import configure_parser  # mlx-lm's own parser takes the line (nothing is converted here)

    args = configure_parser().parse_args(shlex.split(convert)[1:])
    assert (args.hf_path, args.mlx_path, args.quantize, args.q_bits, args.q_group_size) == (
        "allenai/OLMo-2-0425-1B", "OLMo-2-1B-mlx-q4", True, 4, 64)


def test_an_adapter_with_its_own_chat_template_puts_it_in_the_base_folder(site):
    meta = orjson.loads((site / "s1" / "metadata.json").read_bytes())
    meta = with_base(meta, name="m-4bit", hf_id="org/m-4bit", converted_from=None, quantization=MLX_Q4, test_model=False)
    meta["chat_template"]["source"] = "secai (OLMo-2-Instruct template)"
    text = model_card.card(meta, None, {"base_way": "../../base/m-4bit"})
    anywhere, = bash_blocks(use_section(text))  # no in-store form: it would write into the base folder
    assert anywhere[1:3] == ["hf download org/m-4bit --local-dir m-4bit", "cp s1/adapters/chat_template.jinja m-4bit/"]
    assert anywhere[3].startswith("mlx_lm.generate --model m-4bit --adapter-path s1/adapters ")


def test_hub_origin_reads_what_the_folder_says(tmp_path):
    config = {"model_type": "olmo2", "quantization": {"group_size": 64, "bits": 4}}
    converted = tmp_path / "OLMo-2-1B-mlx-q4"  # what `mlx_lm convert -q` leaves: a card naming its source
    converted.mkdir()
    (converted / "config.json").write_text(json.dumps(config))
    (converted / "README.md").write_text("---\nbase_model: allenai/OLMo-2-0425-1B\nlibrary_name: mlx\ntags:\n- mlx\n---\n")
    assert store.hub_origin(converted) == {"hf_id": None, "converted_from": "allenai/OLMo-2-0425-1B", "quantization": MLX_Q4}
    uploaded = tmp_path / "uploaded"  # the card mlx-lm's upload writes, as `hf download --local-dir` fetches it
    shutil.copytree(converted, uploaded)
    (uploaded / "README.md").write_text(
        "---\nbase_model: allenai/OLMo-2-0425-1B\nlibrary_name: mlx\n---\n\n# mlx-community/OLMo-2-0425-1B-4bit\n\n"
        "This model [mlx-community/OLMo-2-0425-1B-4bit](https://huggingface.co/mlx-community/OLMo-2-0425-1B-4bit) was\n"
        "converted to MLX format from [allenai/OLMo-2-0425-1B](https://huggingface.co/allenai/OLMo-2-0425-1B)\n")
    assert store.hub_origin(uploaded)["hf_id"] == "mlx-community/OLMo-2-0425-1B-4bit"
    snapshot = tmp_path / "hub" / "models--org--m-4bit" / "snapshots" / ("0123456789abcdef" * 2 + "01234567")
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text(json.dumps({"model_type": "olmo2"}))
    assert store.hub_origin(snapshot) == {"hf_id": "org/m-4bit", "converted_from": None, "quantization": None}
