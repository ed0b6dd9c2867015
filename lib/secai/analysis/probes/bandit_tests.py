"""Every test bandit ships, as JSON on stdout (run by secai.analysis.harvest with the scanners' own
interpreter; it imports only the standard library and bandit, never secai).

The plugins come from bandit.core.extension_loader.MANAGER (the tests `bandit -l` lists), the
blacklist calls and imports (B3xx, B4xx) from MANAGER.blacklist. Per test: id, name, its
documentation as written (the test function's docstring when it is the documented one, else its
module's; a blacklist entry's section of its module docstring is cut out by the harvester), the
CWEs it declares (`cwe=issue.Cwe.NAME` in its source, a blacklist entry's cwe), and the severities
it reports with (`severity=bandit.LEVEL` in its source, a blacklist entry's level). Text only: the
harvester turns the RST into prose.
"""

from __future__ import annotations

import inspect
import json
import re
import sys

_CWE_NAME = re.compile(r"\bCwe\.([A-Z_]+)")
_SEVERITY = re.compile(r"\bseverity\s*=\s*bandit\.(LOW|MEDIUM|HIGH)\b")


def cwe_id(value) -> str | None:
    number = getattr(value, "id", value)
    return f"CWE-{int(number)}" if isinstance(number, int) and number > 0 else None


def plugin(ext, cwe_names) -> dict:
    fn = ext.plugin
    try:
        source = inspect.getsource(fn)
    except (OSError, TypeError):
        source = ""
    module = sys.modules.get(fn.__module__)
    cwes = sorted({c for n in _CWE_NAME.findall(source) if (c := cwe_id(cwe_names.get(n)))})
    if not cwes and module:  # the issue is made by a helper: its module's CWE, when it has only one
        try:
            found = {c for n in _CWE_NAME.findall(inspect.getsource(module)) if (c := cwe_id(cwe_names.get(n)))}
        except (OSError, TypeError):
            found = set()
        cwes = sorted(found) if len(found) == 1 else []
    return {"id": fn._test_id, "name": ext.name, "function_doc": inspect.getdoc(fn) or "",
            "module_doc": (inspect.getdoc(module) if module else None) or "", "cwe": cwes,
            "severity": sorted(set(_SEVERITY.findall(source))), "blacklist": None, "qualnames": []}


def blacklisted(entry: dict, kind: str, module_doc: str) -> dict:
    return {"id": entry["id"], "name": entry["name"], "function_doc": "", "module_doc": module_doc,
            "cwe": [c] if (c := cwe_id(entry.get("cwe"))) else [], "severity": [str(entry.get("level", "MEDIUM"))],
            "blacklist": kind, "qualnames": sorted(map(str, entry.get("qualnames") or ())),
            "message": str(entry.get("message") or "")}


def main() -> None:
    import bandit
    from bandit.blacklists import calls, imports
    from bandit.core import extension_loader, issue

    cwe_names = {n: v for n, v in vars(issue.Cwe).items() if n.isupper()}
    tests = [plugin(ext, cwe_names) for ext in extension_loader.MANAGER.plugins]
    docs = {"Call": inspect.getdoc(calls), "Import": inspect.getdoc(imports), "ImportFrom": inspect.getdoc(imports)}
    seen = set()
    for node, entries in sorted(extension_loader.MANAGER.blacklist.items()):
        for entry in entries:
            if entry["id"] in seen:  # an import blacklisted for Import and ImportFrom (and Call) alike
                continue
            seen.add(entry["id"])
            kind = "calls" if node == "Call" and entry["id"].startswith("B3") else "imports"
            tests.append(blacklisted(entry, kind, docs["Call"] if kind == "calls" else docs["Import"]))
    json.dump({"version": bandit.__version__, "tests": tests}, sys.stdout, sort_keys=True)


if __name__ == "__main__":
    main()
