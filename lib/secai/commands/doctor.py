"""secai-doctor: can this machine run secai, and what is missing? (the checks: secai.ops.checks)"""

from __future__ import annotations

import json
import sys

from secai.cli import Command, entry
from secai.errors import EXIT_ERROR, EXIT_OK
from secai.ops.checks import FAIL, NAMES, diagnose, render_human


class Doctor(Command):
    name = "secai-doctor"
    description = ("Check that this machine can run secai: platform and make, free memory and disk, the Python "
                   "packages (mlx, mlx-lm, torch, faiss, sentence-transformers, transformers, tree-sitter and its "
                   "grammars, huggingface_hub), MLX really running an operation and on which device (Metal, CUDA, "
                   "CPU), the offline MiniLM embedder, the configuration, the base models in the shared store, "
                   "the scanners for fix verification, Hugging Face and GitHub tokens (present or not; never their "
                   "values) and the daemon. Each check is ok, warn or fail; fail only for what blocks the default "
                   "pipeline (`make all`, offline, with the tiny test model), and each problem says what to do.")
    examples = """\
  secai-doctor                      # one line per check, then the verdict and what to do
  secai-doctor -q                   # only the problems and the verdict
  secai-doctor --json | jq '.blocking'
  secai-doctor --hash               # also each base model's content hash (reads the weights)

Exit status: 0 when nothing blocks the default pipeline (warnings allowed), 1 when something does,
2 on a usage error."""
    reads = False
    writes = None

    def add_arguments(self, p):
        p.add_argument("--json", action="store_true",
                       help="one JSON object on stdout: {checks: [{name, group, status, detail, fix, data}], ok, "
                            "blocking, warnings}")
        p.add_argument("--hash", action="store_true",
                       help="also the content hash of each base model in the store (reads all its weights: seconds)")
        p.add_argument("--check", action="append", choices=NAMES, metavar="NAME",
                       help=f"run only this check (repeatable): {', '.join(NAMES)}")

    def run(self) -> int:
        a = self.args
        report = diagnose(a.check, hash_models=a.hash, verbose=a.verbose)
        if a.json:
            sys.stdout.write(json.dumps(report, sort_keys=True, ensure_ascii=False) + "\n")
        else:
            sys.stdout.write(render_human(report, a.quiet))
        sys.stdout.flush()
        if report["ok"]:
            return EXIT_OK
        self.error("the default pipeline is blocked: " + "; ".join(
            f"{c['name']}: {c['detail']} ({c['fix']})" for c in report["checks"] if c["status"] == FAIL))
        return EXIT_ERROR


def main():
    entry(Doctor)


if __name__ == "__main__":
    main()
