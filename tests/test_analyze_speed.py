"""What makes secai-analyze fast changes no output: the kb analyses of the shipped examples (and of a
second copy of them, whose files the run has already read) are the same with the memos of one run
(paths located, projects read, manifests judged) and libyaml as with every finding analysed alone,
every memo emptied and the pure-Python YAML loader; a located path is looked at again when its file
changes; and the mlx backend's batches (the system turn's KV cache, prompts processed one at a time)
reply what mlx-lm's plain batch generation replies, batched or not."""

from __future__ import annotations

import hashlib
import shutil

import pytest
import yaml
from conftest import ROOT

from secai.analysis import context, languages, platform, readings
from secai.analysis.context import NoContext, locate
from secai.analysis.explain import Stats, analyses
from secai.cache import Cache

EXAMPLES = ROOT / "examples"


def _run(findings, root):
    return list(analyses(findings, backend="kb", cache=Cache(None), stats=Stats(), log=lambda _: None, root=root,
                         context_lines=5, semgrep_rules=EXAMPLES / "semgrep-rules"))


def _forget():
    context._located.clear()
    readings._project_frameworks.cache_clear()
    readings._imports_in.cache_clear()
    readings._declared.cache_clear()
    platform._problems.cache_clear()


def test_memos_and_libyaml_change_no_analysis(tmp_path, findings, monkeypatch):
    root = tmp_path / "src"
    shutil.copytree(EXAMPLES / "demo-app", root)
    shutil.copytree(EXAMPLES / "demo-app", root / "copy")
    again = [{**f, "id": hashlib.sha256(f["id"].encode()).hexdigest()[:32],
              "location": {**f["location"], "path": "copy/" + f["location"]["path"]}} for f in findings]
    _forget()
    fast = _run(findings + again, root)
    assert sum("fix" in r["analysis"] for r in fast) >= len(fast) // 2  # the fix rules' work is in it
    monkeypatch.setattr(languages, "_FastAnyTagLoader", languages._AnyTagLoader)
    monkeypatch.setattr(platform, "_FAST", yaml.SafeLoader)
    alone = []
    for f in findings + again:
        _forget()
        alone += _run([f], root)
    assert fast == alone


def test_a_located_file_is_looked_at_again_when_it_changes(tmp_path):
    root, outside = tmp_path / "src", tmp_path / "elsewhere.py"
    root.mkdir()
    (root / "app.py").write_text("x = 1\n")
    outside.write_text("y = 2\n")
    assert locate(root, "app.py") == ((root / "app.py").resolve(), "app.py")
    (root / "app.py").unlink()
    (root / "app.py").symlink_to(outside)
    with pytest.raises(NoContext, match="outside the source root"):
        locate(root, "app.py")
    (root / "app.py").unlink()
    with pytest.raises(NoContext, match="not found"):
        locate(root, "app.py")


def test_batches_reply_as_plain_batch_generation(findings, tiny_model):
    from mlx_lm import batch_generate

    from secai.analysis.mlx import Model, messages

    model = Model(str(tiny_model), max_tokens=12)
    chats = [messages(f, None, []) for f in findings[:4]]
    batched = model.generate(chats)
    one_by_one = [model.generate([c])[0] for c in chats]
    assert model._head is not None and model._head[1] is not None  # the system turn's cache was used
    mlx_model, tokenizer = model._load()
    plain = batch_generate(mlx_model, tokenizer, [tokenizer.apply_chat_template(c, add_generation_prompt=True, tokenize=True)
                                                  for c in chats], max_tokens=12).texts
    assert batched == one_by_one == list(plain)
    assert model.generated_tokens > 0 and model.decode_seconds > 0
