"""Shared test helpers: run a command in-process and get (exit code, records, stderr)."""

from __future__ import annotations

import contextlib
import io
import os
import socket
import sys
from pathlib import Path

import orjson
import pytest

from secai import cpublas

# the BLAS under MLX in this process is the one the commands' own processes load (secai.cpublas),
# whatever test first imports mlx: results compared across processes come from the same kernels
cpublas.prefer()

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
CORPUS = ROOT.parent / "shared" / "corpus"




def run_command(command_class, argv: list[str], stdin: bytes = b"", cwd: Path | None = None, raw: bool = False):
    """Run a secai command in-process: (exit code, records written to stdout, stderr text);
    with raw=True the second item is stdout as text."""
    out, err = io.BytesIO(), io.StringIO()
    fake_in = io.TextIOWrapper(io.BytesIO(stdin), encoding="utf-8")
    fake_out = io.TextIOWrapper(out, encoding="utf-8", write_through=True)
    old = os.getcwd()
    try:
        if cwd:
            os.chdir(cwd)
        with contextlib.redirect_stderr(err):
            saved = sys.stdin, sys.stdout
            sys.stdin, sys.stdout = fake_in, fake_out
            try:
                code = command_class().main(argv)
            finally:
                sys.stdin, sys.stdout = saved
    finally:
        os.chdir(old)
    if raw:
        return code, out.getvalue().decode(), err.getvalue()
    records = [orjson.loads(line) for line in out.getvalue().splitlines() if line.strip()]
    return code, records, err.getvalue()


@pytest.fixture
def corpus():
    if not CORPUS.is_dir():
        pytest.skip("../shared/corpus is absent")
    return CORPUS


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """The tiny random-weight OLMo-2 test model, built once per test session (offline)."""
    from secai.training.tinymodel import build

    os.environ["HF_HUB_OFFLINE"] = "1"
    return build(tmp_path_factory.mktemp("models") / "tiny-olmo2")


@pytest.fixture(scope="module")
def no_network():
    """Any attempt to open a network connection fails the test that made it (tests that load a
    model use it: nothing may be fetched from a hub). Use: pytestmark = pytest.mark.usefixtures("no_network")."""
    def refuse(self, address, *args, **kwargs):
        if self.family in (socket.AF_INET, socket.AF_INET6):
            raise AssertionError(f"network access attempted: {address!r}")
        return real_connect(self, address, *args, **kwargs)

    real_connect = socket.socket.connect
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket.socket, "connect", refuse)
        mp.setattr(socket.socket, "connect_ex", refuse)
        yield


@pytest.fixture(scope="session")
def findings():
    """The findings of the shipped examples (examples/artifacts), parsed once."""
    from secai.commands.parse import Parse

    code, records, err = run_command(Parse, ["-q", str(ROOT / "examples" / "artifacts")])
    assert code == 0, err
    return records


@pytest.fixture
def prompts_seen(monkeypatch) -> list:
    """secai.analysis.mlx.Model replaced by a model that records every chat it is given and replies
    with nothing usable (so the kb analysis stands in); the list of chats is the fixture's value."""
    from secai.analysis import mlx

    seen: list = []

    class RecordingModel:
        def __init__(self, path, adapter=None, max_tokens=512):
            self.path, self.adapter, self.hash = path, adapter, "f" * 16

        def generate(self, chats):
            seen.extend(chats)
            return ["no"] * len(chats)

    monkeypatch.setattr(mlx, "Model", RecordingModel)
    return seen
