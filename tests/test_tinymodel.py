"""The tiny random-weight OLMo-2 model (secai.training.tinymodel): built once into a temporary folder, then
loaded and run through mlx-lm's Python API. Nothing here may reach the network."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

# huggingface_hub reads these when it is first imported, so they are set before anything imports it
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

from conftest import ROOT  # noqa: E402
from secai.training import store as models, tinymodel  # noqa: E402

mlx_lm = pytest.importorskip("mlx_lm")

CONVERSATION = [
    {"role": "system", "content": "You are a security engineer."},
    {"role": "user", "content": "Explain CWE-89 in app.py line 42."},
    {"role": "assistant", "content": "Summary: SQL injection. Remediation: use a parameterized query."},
]
PROMPTS = ["SQL injection in app.py", "A hard-coded AWS access key was found in settings.ini line 3",
           "Upgrade requests 2.19.1 to 2.31.0"]


pytestmark = pytest.mark.usefixtures("no_network")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return tinymodel.build(tmp_path_factory.mktemp("models") / "tiny-olmo2", seed=0)


@pytest.fixture(scope="module")
def loaded(model_dir):
    return mlx_lm.load(str(model_dir))


def chat(tokenizer, messages, **kwargs):
    return tokenizer.apply_chat_template(messages, **kwargs)


# ---------------------------------------------------------------- files
def test_files_manifest_and_card(model_dir):
    names = {p.name for p in model_dir.iterdir()}
    assert names == {"README.md", "config.json", "generation_config.json", "model.safetensors", "secai-model.json",
                     "special_tokens_map.json", "tokenizer.json", "tokenizer_config.json"}
    assert sum(p.stat().st_size for p in model_dir.iterdir()) < 4_000_000
    manifest = json.loads((model_dir / "secai-model.json").read_text())
    assert manifest["generator"] == "secai.training.tinymodel" and manifest["generator_version"] == tinymodel.GENERATOR_VERSION
    assert manifest["seed"] == 0 and manifest["random_weights"] is True
    assert manifest["files"] == {name: tinymodel.sha256_file(model_dir / name) for name in names - {"secai-model.json"}}
    assert manifest["content_hash"] == models.content_hash(model_dir) == models.identity(model_dir)["content_hash"]
    card = (model_dir / "README.md").read_text()
    assert "random-weight TEST DEVICE, not a useful model" in card
    # no build leftovers next to the model
    assert [p.name for p in model_dir.parent.iterdir()] == ["tiny-olmo2"]


def test_content_hash_ignores_card_but_not_weights(model_dir, tmp_path):
    import shutil
    copy = tmp_path / "copy"
    shutil.copytree(model_dir, copy)
    (copy / "README.md").write_text("edited card\n")
    assert models.content_hash(copy) == models.content_hash(model_dir)
    with open(copy / "model.safetensors", "r+b") as fh:
        fh.seek(-1, os.SEEK_END)
        last = fh.read(1)
        fh.seek(-1, os.SEEK_END)
        fh.write(bytes([last[0] ^ 1]))
    assert models.content_hash(copy) != models.content_hash(model_dir)


def test_config_is_olmo2_with_every_model_arg(model_dir, loaded):
    from mlx_lm.models import olmo2

    config = json.loads((model_dir / "config.json").read_text())
    assert config["model_type"] == "olmo2" and config["architectures"] == ["Olmo2ForCausalLM"]
    # every field explicit: mlx-lm's defaults are not OLMo-2's (tie_word_embeddings defaults to True)
    assert {f.name for f in dataclasses.fields(olmo2.ModelArgs)} <= set(config)
    assert config["tie_word_embeddings"] is False
    model, tokenizer = loaded
    assert isinstance(model, olmo2.Model) and hasattr(model, "lm_head")
    assert config["vocab_size"] == len(tokenizer)  # no padded ids a random model could emit


# ---------------------------------------------------------------- tokenizer and chat template
def test_tokenizer_is_byte_level_bpe_with_olmo2_specials(loaded):
    from mlx_lm.tokenizer_utils import BPEStreamingDetokenizer, TokenizerWrapper

    _, tokenizer = loaded
    assert isinstance(tokenizer, TokenizerWrapper)
    assert isinstance(tokenizer.detokenizer, BPEStreamingDetokenizer)
    assert tokenizer.bos_token == tokenizer.eos_token == "<|endoftext|>" and tokenizer.pad_token == "<|pad|>"
    assert tokenizer.eos_token_ids == {tokenizer.eos_token_id}
    assert tokenizer.pad_token_id != tokenizer.eos_token_id
    text = "naïve café — 日本語 🙂\tx = {\"a\": [1, 2]}\r\n"  # any bytes round-trip
    ids = tokenizer.encode(text, add_special_tokens=True)
    assert tokenizer.decode(ids) == text
    assert tokenizer.eos_token_id not in ids  # encoding adds no BOS/EOS, as OLMo-2's does not


def test_chat_template_conversation_ends_with_eos(loaded):
    _, tokenizer = loaded
    text = chat(tokenizer, CONVERSATION, tokenize=False)
    assert text == ("<|endoftext|><|system|>\nYou are a security engineer.\n<|user|>\nExplain CWE-89 in app.py line 42.\n"
                    "<|assistant|>\nSummary: SQL injection. Remediation: use a parameterized query.<|endoftext|>")
    ids = chat(tokenizer, CONVERSATION)
    assert ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id
    assert ids[-1] in tokenizer.eos_token_ids  # the token generation stops on
    for marker in tinymodel.ROLE_MARKERS:
        assert len(tokenizer.encode(marker, add_special_tokens=False)) == 1


def test_generation_prompt_ends_with_assistant_header(loaded):
    _, tokenizer = loaded
    text = chat(tokenizer, CONVERSATION[:2], tokenize=False, add_generation_prompt=True)
    assert text.endswith("<|user|>\nExplain CWE-89 in app.py line 42.\n<|assistant|>\n")
    prompt = chat(tokenizer, CONVERSATION[:2], add_generation_prompt=True)
    full = chat(tokenizer, CONVERSATION)
    # the prompt's tokens are a prefix of the whole conversation's, so prompt masking is exact
    assert full[:len(prompt)] == prompt and len(full) > len(prompt)


def test_earlier_assistant_turns_end_with_eos_too(loaded):
    _, tokenizer = loaded
    turns = CONVERSATION + [{"role": "user", "content": "And the fix?"}, {"role": "assistant", "content": "Bind it."}]
    text = chat(tokenizer, turns, tokenize=False)
    assert "parameterized query.<|endoftext|>\n<|user|>\nAnd the fix?\n<|assistant|>\nBind it.<|endoftext|>" in text


# ---------------------------------------------------------------- generation
def test_greedy_generation_is_deterministic(loaded):
    model, tokenizer = loaded
    prompt = chat(tokenizer, CONVERSATION[:2], add_generation_prompt=True)
    runs = [[r.token for r in mlx_lm.stream_generate(model, tokenizer, prompt, max_tokens=8)] for _ in range(2)]
    assert runs[0] == runs[1] and 1 <= len(runs[0]) <= 8
    assert all(0 <= t < len(tokenizer) for t in runs[0])
    text = mlx_lm.generate(model, tokenizer, prompt, max_tokens=8)
    assert isinstance(text, str) and text


def test_batch_generate_three_prompts(loaded):
    model, tokenizer = loaded
    prompts = [chat(tokenizer, [{"role": "user", "content": p}], add_generation_prompt=True) for p in PROMPTS]
    assert len({len(p) for p in prompts}) == 3  # different lengths: padding is exercised
    result = mlx_lm.batch_generate(model, tokenizer, prompts, max_tokens=6, return_token_ids=True)
    assert len(result.texts) == len(result.token_ids) == 3
    assert all(1 <= len(ids) <= 6 for ids in result.token_ids)
    again = mlx_lm.batch_generate(model, tokenizer, prompts, max_tokens=6, return_token_ids=True)
    assert again.token_ids == result.token_ids
    # batched greedy decoding starts where one-at-a-time decoding does
    single = [[r.token for r in mlx_lm.stream_generate(model, tokenizer, p, max_tokens=6)] for p in prompts]
    assert [ids[:3] for ids in result.token_ids] == [ids[:3] for ids in single]


def test_transformers_computes_the_same_logits(model_dir, loaded):
    """The folder is a genuine OLMo-2 checkpoint: transformers' Olmo2ForCausalLM reads the same
    config and weights and gives the same logits as mlx-lm."""
    torch = pytest.importorskip("torch")
    import mlx.core as mx
    import numpy as np
    from transformers import AutoModelForCausalLM

    model, tokenizer = loaded
    ids = chat(tokenizer, CONVERSATION[:2], add_generation_prompt=True)
    reference = AutoModelForCausalLM.from_pretrained(str(model_dir))
    assert type(reference).__name__ == "Olmo2ForCausalLM"
    with torch.no_grad():
        expected = reference(torch.tensor([ids])).logits.numpy()
    np.testing.assert_allclose(np.array(model(mx.array([ids]))), expected, atol=1e-4)


# ---------------------------------------------------------------- building
def test_rebuild_is_byte_identical(model_dir, tmp_path):
    """A second build, in another process (other hash seeds, through main()), writes the same bytes."""
    out = tmp_path / "again"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "lib"), "PYTHONHASHSEED": "123"}
    proc = subprocess.run([sys.executable, "-m", "secai.training.tinymodel", "-q", str(out)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "" and proc.stderr == ""
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in model_dir.iterdir())
    for p in model_dir.iterdir():
        assert (out / p.name).read_bytes() == p.read_bytes(), p.name


def test_rebuild_in_place_and_other_seed(model_dir, tmp_path):
    out = tinymodel.build(tmp_path / "m", seed=0)
    manifest = (out / "secai-model.json").read_bytes()
    assert tinymodel.build(out, seed=0) == out  # replacing an existing model
    assert (out / "secai-model.json").read_bytes() == manifest
    tinymodel.build(out, seed=1)
    assert (out / "tokenizer.json").read_bytes() == (model_dir / "tokenizer.json").read_bytes()
    assert (out / "model.safetensors").read_bytes() != (model_dir / "model.safetensors").read_bytes()
    assert json.loads((out / "secai-model.json").read_text())["seed"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["m"]


def test_interrupted_build_leaves_the_old_model(tmp_path, monkeypatch):
    out = tinymodel.build(tmp_path / "m")
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(tinymodel, "write_safetensors", crash)
    with pytest.raises(KeyboardInterrupt):
        tinymodel.build(out, seed=7)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    with pytest.raises(KeyboardInterrupt):
        tinymodel.build(tmp_path / "new")
    assert [p.name for p in tmp_path.iterdir()] == ["m"]  # no half model, no temporary folder


def test_main_errors_are_one_line(tmp_path, capsys):
    assert tinymodel.main([str(tmp_path / "m"), "--vocab-size", "100000"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("secai.training.tinymodel: error: ") and err.count("\n") == 1
    assert not (tmp_path / "m").exists()
    with pytest.raises(SystemExit) as exc:
        tinymodel.main(["--help"])
    assert exc.value.code == 0
