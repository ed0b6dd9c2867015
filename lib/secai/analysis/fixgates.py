"""Whether a fix rule (lib/secai/analysis/kb/fixes/*.yaml) may be used on a file, judged by what
surrounds the file rather than by its lines: the rule's `unless_in_image` and `frameworks` keys
(schemas/fixrule.schema.json).

    declines({"frameworks": ["django"]}, Path("src"), "app/templates/form.html")
    # None: the project is a Django one; else why the rule does not apply

- `unless_in_image`: a Dockerfile or Containerfile of the file's tree builds it into an image
  (secai.analysis.languages.built_into_image), where it must keep what the container needs.
- `frameworks`: the frameworks of the file's project (secai.analysis.readings.project_frameworks:
  its nearest manifests and the file's own imports) are known, and the rule's list holds all of
  them. A project that names another framework as well (Django beside Flask, whose Jinja templates
  a Django tag breaks), or whose framework is unknown, gets no fix from the rule.
"""

from __future__ import annotations

from pathlib import Path

from secai.analysis.languages import built_into_image


def declines(rule: dict, root: Path | None, path: str) -> str | None:
    """Why the rule (its data as written) does not apply to the file at `path` under `root`, or None."""
    if rule.get("unless_in_image") and built_into_image(root, path):
        return "a Dockerfile builds the file into an image"
    wanted = rule.get("frameworks")
    if wanted:
        from secai.analysis.readings import project_frameworks

        used = project_frameworks(root, path)
        if not used:
            return "the project's framework is unknown"
        if not used <= set(wanted):
            return f"the project uses {', '.join(sorted(used - set(wanted)))}"
    return None
