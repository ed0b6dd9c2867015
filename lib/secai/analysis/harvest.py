"""Harvesting rule knowledge from the installed scanners and the CWE catalogue (`secai-kb harvest`).

The scanners live in their own virtual environment, so nothing of theirs is imported here: each
source has a probe (lib/secai/analysis/probes/*.py, standard library and its scanner only) that
the scanners' interpreter runs (`SCANNERS_DIR/python PROBE`, with a timeout), printing JSON. This
module checks what came back, turns it into records (schemas/rule.schema.json: every record is
validated before anything is written) and writes one file per source into the output folder
(lib/secai/analysis/kb/harvested/ by default, committed so a clone without scanners has them):

    {"schema": "harvest/1", "source": {name, version, licence, licence_url, harvester, ...},
     "records": [
    {one record, keys sorted},
    ...
    ]}

one record per line, sorted by id (then framework and entity), so a new scanner version shows as
a readable diff. Each file is written atomically (secai.files.write_atomic).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import orjson

from secai.analysis.rules import HARVESTED, advice_of, why_of
from secai.errors import UserError
from secai.files import write_atomic
from secai.records import schema_error

HARVESTER_VERSION = "2"  # 2: no RST footnote references in prose
PROBES = Path(__file__).resolve().parent / "probes"
TIMEOUT = 300  # seconds one probe may run (checkov loads all its checks: ~15 s)
LICENCES = {
    "checkov": ("Apache-2.0", "https://github.com/bridgecrewio/checkov/blob/main/LICENSE"),
    "bandit": ("Apache-2.0", "https://github.com/PyCQA/bandit/blob/main/LICENSE"),
    "cwe": ("MITRE CWE Terms of Use", "https://cwe.mitre.org/about/termsofuse.html"),
}
MAX_PROSE = 1500        # characters of a bandit test's prose
MAX_EXTENDED = 1200     # characters of a CWE's extended description
MAX_MITIGATIONS = 10    # a CWE's first mitigations
MAX_MITIGATION = 1000   # characters of one mitigation


class HarvestError(UserError, RuntimeError):
    """A probe that could not run or returned something unusable (the message says which and why)."""


# ---------------------------------------------------------------- running the probes
def scanners_python(scanners_dir: Path | None = None) -> Path:
    """The interpreter of the scanners' environment: the `python` beside checkov where
    secai.analysis.verify.Scanners finds it (`scanners_dir` or its bin/, else .scanners/, else PATH)."""
    from secai.analysis.verify import Scanners

    checkov = Scanners.find(scanners_dir).paths.get("checkov")
    python = Path(checkov).parent / "python" if checkov else None
    if python is None or not python.exists():
        where = f"in {scanners_dir}" if scanners_dir else "in .scanners/ or on PATH"
        raise HarvestError(f"no scanner environment (checkov and its python) {where}; run `make scanners` "
                           "or give --scanners-dir")
    return python


def probe(python: Path, name: str, timeout: int = TIMEOUT) -> dict:
    """The JSON object the probe `name` prints when run by `python` (the scanners' interpreter)."""
    script = PROBES / f"{name}.py"
    try:
        done = subprocess.run([str(Path(python).absolute()), "-I", str(script)], capture_output=True, timeout=timeout,
                              stdin=subprocess.DEVNULL, cwd=PROBES, check=False)
    except FileNotFoundError:
        raise HarvestError(f"{python}: no such interpreter (install the scanners: make scanners)") from None
    except subprocess.TimeoutExpired:
        raise HarvestError(f"{script.name}: no result within {timeout} s") from None
    if done.returncode != 0:
        last = (done.stderr.decode("utf-8", "replace").strip().splitlines() or ["no message"])[-1]
        raise HarvestError(f"{script.name}: exit status {done.returncode}: {last}")
    try:
        out = orjson.loads(done.stdout)
    except orjson.JSONDecodeError as exc:
        raise HarvestError(f"{script.name}: output is not JSON: {exc}") from None
    if not isinstance(out, dict) or not isinstance(out.get("version"), str):
        raise HarvestError(f"{script.name}: expected an object with a version")
    return out


# ---------------------------------------------------------------- checkov
CHECKOV_FIELDS = ("id", "name", "framework", "entity", "resources", "categories", "guideline", "check",
                  "inspected_key", "expected", "any_value", "forbidden", "missing", "condition", "conditions")


def checkov_records(raw: dict) -> list[dict]:
    out, seen = [], set()
    for check in raw.get("checks") or ():
        record = {"kind": "checkov", **{k: check.get(k) for k in CHECKOV_FIELDS}}
        key = (record["id"], record["framework"])
        if key in seen:  # registered twice in one framework (e.g. resource and data): the first is kept
            continue
        seen.add(key)
        out.append(record)
    return sorted(out, key=lambda r: (r["id"], r["framework"], r["entity"]))


# ---------------------------------------------------------------- bandit
_HEADING = re.compile(r"^\s*(?:\*\*)?B\d{3}:\s*(.+?)(?:\*\*)?\s*$")
_SECTION_END = re.compile(r"^(\*\*config options|:example:|\*\*example|see also|\.\. seealso::|\.\. versionadded|"
                          r"\.\. versionchanged|\.\. code-block|\.\. note|\+-)", re.IGNORECASE)
_BLACKLIST_HEADING = re.compile(r"^(B\d{3}): *(.+)\n-{3,}\n", re.MULTILINE)
_ISSUE = re.compile(r">> Issue: \[B\d{3}:\w+\] (.+?)\s+Severity:", re.DOTALL)
_LINK = re.compile(r"https?://[^\s<>`'\")]+[^\s<>`'\").,;:]")


def rst_prose(doc: str) -> tuple[str | None, str]:
    """(heading, prose) of an RST docstring: the paragraphs before its config, example and see-also
    sections, markup removed, each on one line."""
    lines = [ln for ln in doc.splitlines() if not re.fullmatch(r"\s*[=\-~^]{3,}\s*", ln)]
    heading = None
    paragraphs, current = [], []
    for line in lines:
        if heading is None and not paragraphs and not current and (m := _HEADING.match(line)):
            heading = m[1].strip()
            continue
        stripped = line.strip()
        if _SECTION_END.match(stripped):
            break
        if not stripped or re.match(r"(\d+\.|[-*])\s", stripped):  # a blank line or a list item: a new paragraph
            if current:
                paragraphs.append(" ".join(current))
                current = []
            if not stripped:
                continue
        current.append(stripped)
    if current:
        paragraphs.append(" ".join(current))
    paragraphs = [_plain(p) for p in paragraphs if not p.startswith(("..", "- :doc:", ":"))]
    return heading, "\n\n".join(p for p in paragraphs if p)


def _plain(text: str) -> str:
    text = re.sub(r":doc:`[^`]*`", "", text)
    text = re.sub(r"\s*\[(?:\d+|#\w*|\*)\]_", "", text)  # footnote references: "Flask [1]_ and Werkzeug [2]_"
    text = re.sub(r"``([^`]+)``", r"`\1`", text)
    text = text.replace("\\*", "*").replace("\\_", "_")
    return " ".join(text.split())


def _cap(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[:limit].rsplit(" ", 1)[0].rstrip(" ,;:") + " …"


def _blacklist_section(doc: str, test_id: str) -> str:
    """The section of a blacklist module's docstring about one test id ("B301: pickle\\n----")."""
    heads = list(_BLACKLIST_HEADING.finditer(doc))
    for i, m in enumerate(heads):
        if m[1] == test_id:
            end = heads[i + 1].start() if i + 1 < len(heads) else len(doc)
            return doc[m.end():end]
    return ""


def _references(doc: str, prose: str) -> list[str]:
    """The links of a test's prose and of its `.. seealso::` block (never of its example output)."""
    found = _LINK.findall(prose)
    if (m := re.search(r"^\.\. seealso::\n(.*?)(?=^\.\. |\Z)", doc, re.MULTILINE | re.DOTALL)):
        found += _LINK.findall(m[1])
    return sorted(set(found))


def bandit_records(raw: dict) -> list[dict]:
    out = []
    for test in raw.get("tests") or ():
        fdoc, mdoc = test.get("function_doc") or "", test.get("module_doc") or ""
        if test.get("blacklist"):
            heading, prose = test["name"], rst_prose(_blacklist_section(mdoc, test["id"]))[1]
            prose = prose or _plain(str(test.get("message") or "").replace("{name}", test["name"]))
            doc = _blacklist_section(mdoc, test["id"])
        else:
            doc = fdoc if fdoc.lstrip().startswith("**B") or not mdoc else mdoc
            heading, prose = rst_prose(doc)
            if not prose and heading:  # documented by its heading and example only: both, in bandit's words
                issue = _ISSUE.search(doc)
                prose = f"{heading.rstrip('.')}." + (f" {' '.join(issue[1].split())}" if issue else "")
        prose = _cap(prose, MAX_PROSE)
        out.append({"kind": "bandit", "id": test["id"], "name": test["name"], "title": heading or test["name"],
                    "what": prose, "why": why_of(prose), "advice": advice_of(prose), "cwe": list(test.get("cwe") or ()),
                    "severity": sorted(set(test.get("severity") or ())), "blacklist": test.get("blacklist"),
                    "qualnames": list(test.get("qualnames") or ()),
                    "references": _references(doc, prose)})
    return sorted(out, key=lambda r: r["id"])


# ---------------------------------------------------------------- CWE
PHASES = ("Architecture and Design", "Implementation", "Requirements", "Operation", "Build and Compilation",
          "Installation", "System Configuration", "Testing", "Policy", "Patching and Maintenance", "Manufacturing",
          "Integration", "Documentation", "Distribution", "Decommissioning", "Compilation", "Porting")


def cwe_list(text: str, keys: tuple[str, ...]) -> list[list[tuple[str, str]]]:
    """A catalogue cell `::KEY:value:KEY:value::KEY:...::` as its entries, each [(KEY, value)];
    only `keys` start a field (values hold colons and capitals of their own)."""
    split = re.compile(r"(?:^|:)(" + "|".join(map(re.escape, keys)) + r"):")
    entries = []
    for chunk in text.split("::"):
        parts = split.split(chunk)
        if len(parts) < 3:
            continue
        entries.append([(parts[i], parts[i + 1].strip()) for i in range(1, len(parts) - 1, 2)])
    return entries


def _phases(value: str) -> list[str]:
    found, rest = [], value.strip()
    while rest:
        name = next((p for p in PHASES if rest.startswith(p)), None)
        if name is None:
            return [*found, rest]
        found.append(name)
        rest = rest[len(name):].strip()
    return found


def _platform(entries: list[list[tuple[str, str]]], *names: str) -> list[str]:
    return sorted({v for e in entries for k, v in e if k in names and v})


def cwe_records(raw: dict) -> list[dict]:
    out = []
    for row in raw.get("rows") or ():
        if row.get("Status") in ("Deprecated", "Obsolete") or not row.get("CWE-ID", "").isdigit():
            continue
        consequences = [{"scope": [v for k, v in e if k == "SCOPE" and v], "impact": [v for k, v in e if k == "IMPACT" and v]}
                        for e in cwe_list(row.get("Common Consequences", ""), ("SCOPE", "IMPACT", "NOTE", "LIKELIHOOD"))]
        mitigations = []
        for e in cwe_list(row.get("Potential Mitigations", ""),
                          ("PHASE", "STRATEGY", "DESCRIPTION", "EFFECTIVENESS", "EFFECTIVENESS NOTES", "MITIGATION ID")):
            fields = dict(e)
            description = " ".join((fields.get("DESCRIPTION") or "").split())
            if description:
                phases = [p for k, v in e if k == "PHASE" for p in _phases(v)]
                mitigations.append({"phase": "; ".join(phases) or None, "strategy": fields.get("STRATEGY") or None,
                                    "description": _cap(description, MAX_MITIGATION)})
        platforms = cwe_list(row.get("Applicable Platforms", ""),
                             ("LANGUAGE NAME", "LANGUAGE CLASS", "LANGUAGE PREVALENCE", "TECHNOLOGY NAME",
                              "TECHNOLOGY CLASS", "TECHNOLOGY PREVALENCE", "OPERATING SYSTEM NAME",
                              "OPERATING SYSTEM CLASS", "OPERATING SYSTEM PREVALENCE", "ARCHITECTURE NAME",
                              "ARCHITECTURE CLASS", "ARCHITECTURE PREVALENCE"))
        extended = " ".join(row.get("Extended Description", "").split())
        out.append({"kind": "cwe", "id": f"CWE-{int(row['CWE-ID'])}", "name": row["Name"].strip(),
                    "abstraction": row["Weakness Abstraction"], "status": row["Status"],
                    "description": " ".join(row["Description"].split()),
                    "extended": _cap(extended, MAX_EXTENDED) if extended else None,
                    "consequences": [c for c in consequences if c["scope"] or c["impact"]],
                    "mitigations": mitigations[:MAX_MITIGATIONS],
                    "languages": _platform(platforms, "LANGUAGE NAME", "LANGUAGE CLASS"),
                    "technologies": _platform(platforms, "TECHNOLOGY NAME", "TECHNOLOGY CLASS")})
    return sorted(out, key=lambda r: int(r["id"][4:]))


# ---------------------------------------------------------------- writing
SOURCES = {  # name: (probe, tool or dataset name, records from its output)
    "checkov": ("checkov_checks", "checkov", checkov_records),
    "bandit": ("bandit_tests", "bandit", bandit_records),
    "cwe": ("cwe_catalogue", "MITRE CWE (cwe2 package)", cwe_records),
}


def document(source: dict, records: list[dict]) -> bytes:
    """The file's bytes: a header, then one record per line (keys sorted), so diffs stay readable."""
    head = orjson.dumps({"schema": "harvest/1", "source": source}, option=orjson.OPT_SORT_KEYS)
    lines = b",\n".join(orjson.dumps(r, option=orjson.OPT_SORT_KEYS) for r in records)
    return head[:-1] + b',\n"records": [\n' + lines + b"\n]}\n"


def build(python: Path, name: str, timeout: int = TIMEOUT) -> tuple[bytes, int]:
    """(the file's bytes, its record count) for one source, every record validated."""
    script, title, convert = SOURCES[name]
    raw = probe(python, script, timeout)
    records = convert(raw)
    if not records:
        raise HarvestError(f"{script}.py: found nothing to harvest")
    for record in records:
        if problem := schema_error("rule/1", record):
            raise HarvestError(f"{name}: {record.get('id')}: {problem}")
    licence, url = LICENCES[name]
    source = {"name": title, "version": raw["version"], "licence": licence, "licence_url": url,
              "harvester": HARVESTER_VERSION, "records": len(records)}
    if raw.get("catalogue"):
        source["catalogue"] = raw["catalogue"]
    if raw.get("skipped"):
        source["skipped"] = list(raw["skipped"])
    return document(source, records), len(records)


def harvest(python: Path, output: Path = HARVESTED, names: tuple[str, ...] = tuple(SOURCES),
            timeout: int = TIMEOUT) -> dict[str, int]:
    """Harvest `names` with the scanners' interpreter `python` into `output`: {name: records}.
    Every source is built before any file is written, so a failing probe changes nothing."""
    built = {name: build(python, name, timeout) for name in names}
    output.mkdir(parents=True, exist_ok=True)
    for name, (data, _) in built.items():
        write_atomic(output / f"{name}.json", data)
    return {name: count for name, (_, count) in built.items()}
