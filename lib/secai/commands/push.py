"""secai-push: publish a dataset or a model folder, with its card, to the Hugging Face Hub in one commit
(the checks, staging and upload: secai.publishing.hub)."""

from __future__ import annotations

from pathlib import Path

from secai import config
from secai.cli import Command, entry
from secai.errors import EXIT_OK, UsageError
from secai.publishing.hub import KINDS, publish


class Push(Command):
    name = "secai-push"
    description = ("Publish a dataset folder (secai-split) or a fine-tuned model folder (secai-lora) to the "
                   "Hugging Face Hub: check it (card with YAML front matter, manifest hashes, secret "
                   "patterns; model metadata and validation), copy what is published into a staging folder, "
                   "create the repository if needed and send the folder, card included, as ONE commit whose "
                   "message carries provenance (secai version, counts, source commits, file hashes). "
                   "--dry-run stops after staging and lists what would be sent. Prints a JSON report.")
    examples = """\
  secai-push dataset build/datasets/analysis --repo octo/secai-findings --dry-run
  secai-push dataset build/datasets/analysis --repo octo/secai-findings --public
  secai-push model ~/shared-olmo-models/fine-tuned/olmo2-secai --repo octo/olmo2-secai-lora \\
      --revision stage2 --source-commit 3f2a9c1
  secai-push dataset build/datasets/analysis --dry-run | jq -r '.files[].path'

The token is HF_TOKEN or the login `hf auth login` stored; it is never printed. HF_ENDPOINT
points at another Hub. --repo defaults to push.dataset_repo / push.model_repo (config/secai.yaml).
Exit status: 0 pushed, staged (--dry-run) or unchanged (--skip-unchanged); 1 a refused folder
or a failed push; 2 a usage error."""
    reads = False

    def add_arguments(self, p):
        p.add_argument("kind", choices=sorted(KINDS), help="what DIR holds")
        p.add_argument("dir", metavar="DIR", help="the dataset or model folder to publish")
        p.add_argument("--repo", metavar="OWNER/NAME",
                       help="Hub repository (default: push.dataset_repo or push.model_repo)")
        vis = p.add_mutually_exclusive_group()
        vis.add_argument("--private", dest="private", action="store_true", default=None,
                         help="create the repository private (default: push.private, "
                              f"{str(config.default('push', 'private')).lower()})")
        vis.add_argument("--public", dest="private", action="store_false", help="create it public")
        p.add_argument("--revision", metavar="BRANCH", help="branch to commit to, created if needed "
                                                            f"(default: push.revision, {config.default('push', 'revision')})")
        p.add_argument("--dry-run", action="store_true", help="check and stage only: nothing is sent")
        p.add_argument("--stage", metavar="DIR", help="staging folder (default: push.staging/KIND-OWNER--NAME)")
        p.add_argument("--source-commit", action="append", default=[], metavar="SHA",
                       help="a source commit to name in the commit message (repeatable; the examples' "
                            "provenance commits are always named)")
        p.add_argument("--skip-unchanged", action="store_true",
                       help="do nothing (no checks, no staging, no network) when the files to publish equal "
                            "the last push to this repository and branch (recorded in push.state)")

    def check(self, args):
        if not (args.repo or config.get("push", f"{args.kind}_repo")):
            raise UsageError(f"no --repo and no push.{args.kind}_repo in config/secai.yaml")

    def run(self) -> int:
        a = self.args
        report = publish(a.kind, Path(a.dir), a.repo or config.get("push", f"{a.kind}_repo"), private=a.private,
                         revision=a.revision, staging=Path(a.stage) if a.stage else None, dry_run=a.dry_run,
                         skip_unchanged=a.skip_unchanged, source_commits=a.source_commit, log=self.log)
        self.write([report])
        return EXIT_OK


def main():
    entry(Push)


if __name__ == "__main__":
    main()
