"""secai-fetch: download the artifacts of new successful GitHub Actions runs into artifacts/runs/<run-id>/
(the API client, safe unzip and state: secai.ops.github)."""

from __future__ import annotations

from secai import config
from secai.cli import Command, entry
from secai.errors import EXIT_OK, UsageError
from secai.ops.github import fetch_from_config


class Fetch(Command):
    name = "secai-fetch"
    description = ("Download the artifacts of new successful GitHub Actions runs of a repository and unpack "
                   "each run, safely, into DEST/<run-id>/ (default artifacts/runs), recording every run fetched "
                   "(run id, head sha, branch) in a state file so that no run is downloaded twice. Uses the "
                   "GitHub REST API with GITHUB_TOKEN or GH_TOKEN; retries 5xx answers and network errors with "
                   "backoff and waits out rate limits. Prints one JSON line per run fetched.")
    examples = """\
  secai-fetch --repo octo/app --workflow security.yml
  secai-fetch --repo octo/app --branch '' --artifact 'sarif-*' --max-runs 3
  secai-fetch --repo octo/app | jq -r .dir | xargs secai-parse > new-findings.jsonl

Each run lands whole in DEST/<run-id>/<artifact>/... with a .secai-run.json describing it; a
killed fetch leaves only a hidden folder that the next one removes. The state (fetch.state,
default build/state/fetch.json) is replaced atomically after each run. Exit status: 0 done (also
when there was nothing new), 1 an error (bad token, repository not found, network or rate limit
beyond the retries), 2 a usage error."""
    reads = False

    def add_arguments(self, p):
        p.add_argument("--repo", metavar="OWNER/NAME", help="GitHub repository (default: fetch.repo)")
        p.add_argument("--workflow", metavar="FILE", help="only runs of this workflow file (security.yml) or id "
                                                          "(default: fetch.workflow; none: every workflow)")
        p.add_argument("--branch", help="only runs on this branch; '' for every branch "
                                            f"(default: fetch.branch, {config.default('fetch', 'branch')!r})")
        p.add_argument("--artifact", action="append", metavar="GLOB",
                       help="only artifacts whose name matches (repeatable; default: fetch.artifact, "
                            f"{config.default('fetch', 'artifact')!r})")
        p.add_argument("--dest", metavar="DIR", help="where runs are unpacked "
                                                    f"(default: fetch.dest, {config.default('fetch', 'dest')})")
        p.add_argument("--state", metavar="FILE", help="state file "
                                                      f"(default: fetch.state, {config.default('fetch', 'state')})")
        p.add_argument("--max-runs", type=int, metavar="N", help="runs fetched at most per call, and on the "
                                                                 f"first call (default: fetch.max_runs, {config.default('fetch', 'max_runs')})")

    def check(self, args):
        if args.max_runs is not None and args.max_runs < 1:
            raise UsageError("--max-runs must be at least 1")

    def run(self) -> int:
        a = self.args
        reports = fetch_from_config(log=self.log, repo=a.repo, workflow=a.workflow, branch=a.branch,
                                    artifact=a.artifact, dest=a.dest, state=a.state, max_runs=a.max_runs)
        self.write(reports)
        self.log(f"{len(reports)} new runs, {sum(len(r['artifacts']) for r in reports)} artifacts, "
                 f"{sum(r['files'] for r in reports)} files")
        return EXIT_OK


def main():
    entry(Fetch)


if __name__ == "__main__":
    main()
