"""A tiny OLMo-2-architecture model with random weights: the offline test and demo device.

`build(out_dir)` writes a model folder that `mlx_lm.load` (and transformers' `Olmo2ForCausalLM`)
loads: `config.json` (every field of mlx-lm's `olmo2.ModelArgs` set explicitly), random weights
drawn from a seeded generator (`model.safetensors`, Hugging Face names, which are also mlx-lm's),
a byte-level BPE tokenizer trained here on a corpus this module generates (`tokenizer.json`,
`tokenizer_config.json` with OLMo-2-Instruct's chat template, `special_tokens_map.json`),
`generation_config.json`, a model card saying plainly that it is a random-weight TEST DEVICE, and
`secai-model.json`: the generator, its version, the seed, each file's SHA-256 and a content hash
that identifies the model.

Nothing is downloaded and nothing depends on the rest of the project's files: the same seed and
the same generator version give byte-identical files on any machine. The folder is built next to
the target under a temporary name and renamed into place, so an interrupted build never leaves
half a model.

    python -m secai.training.tinymodel build/models/base/tiny-olmo2
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

from secai.files import building, sha256_file
from secai.training.store import MANIFEST, content_hash, identity

# Bump whenever anything written by build() changes (corpus, tokenizer settings, config, card):
# the version is part of the model's identity.
GENERATOR_VERSION = 1
NAME = "tiny-olmo2"

# OLMo-2's special tokens and its Instruct chat template (allenai/OLMo-2-1124-*-Instruct,
# tokenizer_config.json): BOS and EOS are both <|endoftext|>; every assistant turn ends with EOS,
# so generation stops there; add_generation_prompt appends "<|assistant|>\n".
EOS = "<|endoftext|>"
PAD = "<|pad|>"
ROLE_MARKERS = ("<|system|>", "<|user|>", "<|assistant|>")
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ '<|system|>\\n' + message['content'] + '\\n' }}"
    "{% elif message['role'] == 'user' %}{{ '<|user|>\\n' + message['content'] + '\\n' }}"
    "{% elif message['role'] == 'assistant' %}"
    "{% if not loop.last %}{{ '<|assistant|>\\n'  + message['content'] + eos_token + '\\n' }}"
    "{% else %}{{ '<|assistant|>\\n'  + message['content'] + eos_token }}{% endif %}"
    "{% endif %}"
    "{% if loop.last and add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}"
    "{% endfor %}"
)
# cl100k's pre-tokenization, which OLMo-2's tokenizer (dolma2) uses
SPLIT_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)

# Sizes: small enough to build in about a second and to train LoRA in seconds, large enough to
# exercise every piece of the architecture (several layers, several heads, q/k norms, untied head).
DEFAULTS = {
    "vocab_size": 2048,
    "hidden_size": 64,
    "intermediate_size": 256,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "max_position_embeddings": 4096,
}
INIT_STD = 0.02  # OLMo-2's initializer_range


# ---------------------------------------------------------------- tokenizer
def train_tokenizer(vocab_size: int):
    """A byte-level BPE tokenizer in OLMo-2's style (cl100k pre-tokenization, byte-level decoding,
    no BOS added on encode), trained on secai.training.tinycorpus.corpus(). Returns a
    `tokenizers.Tokenizer` of exactly vocab_size tokens: <|endoftext|> (BOS, EOS, UNK) and <|pad|>
    first, the role markers last."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    from secai.training.tinycorpus import corpus  # imported here: the corpus uses this module's tokens

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(SPLIT_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    tok.post_processor = processors.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    specials = [AddedToken(t, special=True, normalized=False) for t in (EOS, PAD)]
    trainer = trainers.BpeTrainer(vocab_size=vocab_size - len(ROLE_MARKERS), min_frequency=2, show_progress=False,
                                  special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus(), trainer=trainer)
    # In OLMo-2 the role markers are plain text; here they are single (non-special) tokens, so the
    # tiny vocabulary does not spend merges on them and prompt/answer boundaries are one token.
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in ROLE_MARKERS])
    if tok.get_vocab_size() != vocab_size:
        raise RuntimeError(f"tokenizer has {tok.get_vocab_size()} tokens, wanted {vocab_size}: "
                           "the corpus is too small for this vocabulary")
    return tok


def _tokenizer_config(tok, max_length: int) -> dict:
    added = {}
    for token in (EOS, PAD, *ROLE_MARKERS):
        added[str(tok.token_to_id(token))] = {"content": token, "lstrip": False, "normalized": False, "rstrip": False,
                                              "single_word": False, "special": token in (EOS, PAD)}
    return {
        "add_bos_token": False,
        "add_eos_token": False,
        "add_prefix_space": False,
        "added_tokens_decoder": added,
        "bos_token": EOS,
        "chat_template": CHAT_TEMPLATE,
        "clean_up_tokenization_spaces": False,
        "eos_token": EOS,
        "extra_special_tokens": {},
        "model_max_length": max_length,
        "pad_token": PAD,
        # OLMo-2 names GPT2Tokenizer; the generic fast class loads tokenizer.json exactly as
        # written in every transformers version, with nothing rebuilt from vocab and merges
        "tokenizer_class": "PreTrainedTokenizerFast",
        "unk_token": EOS,
    }


# ---------------------------------------------------------------- weights
def model_config(vocab_size: int, eos_id: int, pad_id: int, **sizes) -> dict:
    """config.json: every field of mlx-lm's olmo2.ModelArgs set explicitly (mlx-lm defaults
    tie_word_embeddings to True where OLMo-2 and transformers use False), plus the Hugging Face
    fields of an OLMo-2 checkpoint, so both mlx-lm and transformers read it the same way."""
    s = {**DEFAULTS, **sizes}
    if s["hidden_size"] % s["num_attention_heads"]:
        raise ValueError("hidden_size must be a multiple of num_attention_heads")
    return {
        "architectures": ["Olmo2ForCausalLM"],
        "attention_bias": False,
        "attention_dropout": 0.0,
        "bos_token_id": eos_id,
        "eos_token_id": eos_id,
        "head_dim": s["hidden_size"] // s["num_attention_heads"],
        "hidden_act": "silu",
        "hidden_size": s["hidden_size"],
        "initializer_range": INIT_STD,
        "intermediate_size": s["intermediate_size"],
        "max_position_embeddings": s["max_position_embeddings"],
        "mlp_bias": False,
        "model_type": "olmo2",
        "num_attention_heads": s["num_attention_heads"],
        "num_hidden_layers": s["num_hidden_layers"],
        "num_key_value_heads": s["num_attention_heads"],
        "pad_token_id": pad_id,
        "rms_norm_eps": 1e-06,
        "rope_scaling": None,
        "rope_theta": 500000,
        "rope_traditional": False,
        "tie_word_embeddings": False,
        "torch_dtype": "float32",
        "use_cache": True,
        "vocab_size": vocab_size,
    }


def random_weights(config: dict, seed: int) -> dict[str, np.ndarray]:
    """OLMo-2 parameters under their Hugging Face (= mlx-lm) names: linear weights and embeddings
    ~ N(0, initializer_range²), norms 1, drawn in a fixed order from numpy's PCG64 with `seed`."""
    rng = np.random.Generator(np.random.PCG64(seed))
    h, v, f = config["hidden_size"], config["vocab_size"], config["intermediate_size"]
    q = config["num_attention_heads"] * config["head_dim"]
    kv = config["num_key_value_heads"] * config["head_dim"]

    def normal(*shape):
        return rng.standard_normal(shape, dtype=np.float32) * np.float32(config["initializer_range"])

    def ones(n):
        return np.ones((n,), dtype=np.float32)

    w = {"model.embed_tokens.weight": normal(v, h)}
    for i in range(config["num_hidden_layers"]):
        p = f"model.layers.{i}."
        w[p + "self_attn.q_proj.weight"] = normal(q, h)
        w[p + "self_attn.k_proj.weight"] = normal(kv, h)
        w[p + "self_attn.v_proj.weight"] = normal(kv, h)
        w[p + "self_attn.o_proj.weight"] = normal(h, q)
        w[p + "self_attn.q_norm.weight"] = ones(q)
        w[p + "self_attn.k_norm.weight"] = ones(kv)
        w[p + "mlp.gate_proj.weight"] = normal(f, h)
        w[p + "mlp.up_proj.weight"] = normal(f, h)
        w[p + "mlp.down_proj.weight"] = normal(h, f)
        w[p + "post_attention_layernorm.weight"] = ones(h)
        w[p + "post_feedforward_layernorm.weight"] = ones(h)
    w["model.norm.weight"] = ones(h)
    w["lm_head.weight"] = normal(v, h)
    return w


def write_safetensors(path: Path, tensors: dict[str, np.ndarray], metadata: dict[str, str]) -> None:
    """A safetensors file written byte for byte by this function (sorted names, no padding
    surprises), so the bytes depend on nothing but the tensors."""
    dtypes = {np.dtype(np.float32): "F32", np.dtype(np.float16): "F16"}
    header, offset, blobs = {"__metadata__": dict(sorted(metadata.items()))}, 0, []
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name])
        data = a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {"dtype": dtypes[a.dtype], "shape": list(a.shape), "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # the data starts 8-byte aligned, as the format recommends
    with open(path, "wb") as fh:
        fh.write(len(raw).to_bytes(8, "little"))
        fh.write(raw)
        for data in blobs:
            fh.write(data)


# ---------------------------------------------------------------- build
def _card(config: dict, n_params: int, seed: int, weights_bytes: int) -> str:
    return f"""\
---
license: apache-2.0
library_name: mlx
pipeline_tag: text-generation
tags:
- mlx
- olmo2
- test-model
- random-weights
---

# {NAME} — a random-weight TEST DEVICE, not a useful model

**This model knows nothing. Its weights are random numbers; its output is noise.** It exists so
that secai's tests and offline demo can run every model-using step (loading, chat templating,
generation, batched generation, LoRA fine-tuning, fusing, evaluation) end to end without a
download. Never present its output as an analysis, never publish it as a model, and never use
it to judge the quality of anything.

- Architecture: OLMo-2 (`model_type: olmo2`, as `mlx_lm/models/olmo2.py` and transformers'
  `Olmo2ForCausalLM` implement it): {config['num_hidden_layers']} layers, hidden size
  {config['hidden_size']}, {config['num_attention_heads']} heads, MLP {config['intermediate_size']},
  vocabulary {config['vocab_size']}, untied output head, float32, {n_params:,} parameters
  ({weights_bytes:,} bytes of weights).
- Weights: N(0, {INIT_STD}²) for linear layers and embeddings, 1 for norms, from numpy's PCG64
  seeded with {seed}.
- Tokenizer: byte-level BPE (cl100k pre-tokenization, as OLMo-2's), trained by `secai.training.tinymodel`
  on a small generated corpus of security prose, scanner-like findings and code. `<|endoftext|>` is
  BOS and EOS, `<|pad|>` pads; `<|system|>`, `<|user|>` and `<|assistant|>` are single tokens
  (plain text in OLMo-2).
- Chat template: OLMo-2-Instruct's (`<|endoftext|><|user|>\\n…\\n<|assistant|>\\n…<|endoftext|>`);
  every assistant turn ends with EOS.
- Made by `python -m secai.training.tinymodel DIR --seed {seed}` (generator version {GENERATOR_VERSION});
  the same seed and version give byte-identical files. `{MANIFEST}` holds the file hashes and
  the content hash that identifies it.
"""


def build(out_dir: str | os.PathLike, seed: int = 0, **sizes) -> Path:
    """Build the tiny model into out_dir (replacing what is there) and return out_dir.

    sizes override DEFAULTS (vocab_size, hidden_size, intermediate_size, num_hidden_layers,
    num_attention_heads, max_position_embeddings). Same seed and sizes: byte-identical files."""
    unknown = set(sizes) - set(DEFAULTS)
    if unknown:
        raise TypeError(f"unknown size(s): {', '.join(sorted(unknown))}")
    out = Path(out_dir).absolute()
    with building(out) as tmp:
        _write(tmp, seed, {**DEFAULTS, **sizes})
    return out


def _write(d: Path, seed: int, sizes: dict) -> None:
    tok = train_tokenizer(sizes["vocab_size"])
    eos_id, pad_id = tok.token_to_id(EOS), tok.token_to_id(PAD)
    config = model_config(eos_id=eos_id, pad_id=pad_id, **sizes)
    weights = random_weights(config, seed)
    n_params = sum(a.size for a in weights.values())

    def dump(name: str, obj) -> None:
        (d / name).write_text(json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")

    dump("config.json", config)
    dump("generation_config.json", {"bos_token_id": eos_id, "eos_token_id": eos_id, "pad_token_id": pad_id})
    write_safetensors(d / "model.safetensors", weights, {"format": "pt"})
    (d / "tokenizer.json").write_text(tok.to_str(pretty=True) + "\n", encoding="utf-8")
    dump("tokenizer_config.json", _tokenizer_config(tok, sizes["max_position_embeddings"]))
    dump("special_tokens_map.json", {"bos_token": EOS, "eos_token": EOS, "pad_token": PAD, "unk_token": EOS})
    weights_bytes = (d / "model.safetensors").stat().st_size
    (d / "README.md").write_text(_card(config, n_params, seed, weights_bytes), encoding="utf-8")
    files = {p.name: sha256_file(p) for p in sorted(d.iterdir()) if p.is_file()}
    dump(MANIFEST, {
        "content_hash": content_hash(d),
        "files": files,
        "generator": "secai.training.tinymodel",
        "generator_version": GENERATOR_VERSION,
        "name": NAME,
        "parameters": int(n_params),
        "random_weights": True,
        "seed": seed,
        "sizes": sizes,
    })


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m secai.training.tinymodel",
        description="Build the tiny random-weight OLMo-2 model used by secai's tests and offline demo "
                    "(a TEST DEVICE, not a useful model). Nothing is downloaded.",
        epilog="example: python -m secai.training.tinymodel build/models/base/tiny-olmo2")
    parser.add_argument("out_dir", metavar="OUT_DIR", help="model folder to write (replaced atomically)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights (default: 0)")
    for key, value in DEFAULTS.items():
        parser.add_argument("--" + key.replace("_", "-"), type=int, default=value, help=f"(default: {value})")
    parser.add_argument("-q", "--quiet", action="store_true", help="no summary on stderr")
    args = parser.parse_args(argv)
    sizes = {key: getattr(args, key) for key in DEFAULTS}
    try:
        out = build(args.out_dir, seed=args.seed, **sizes)
    except (OSError, ValueError, RuntimeError) as exc:
        print(f"secai.training.tinymodel: error: {exc}", file=sys.stderr)
        return 1
    if not args.quiet:
        ident = identity(out)
        print(f"secai.training.tinymodel: {out}: {ident['parameters']:,} parameters, content hash "
              f"{ident['content_hash'][:16]}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
