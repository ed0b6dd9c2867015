"""The MITRE CWE catalogue that the `cwe2` package ships, as JSON on stdout (run by
secai.analysis.harvest with the scanners' own interpreter; it imports only the standard library and
cwe2, and only to find the package's files).

It reads the research view's CSV (navigate_cwe/1000.csv: every weakness, no views or categories)
with the csv module and writes the columns the harvester keeps, as the catalogue writes them
(the harvester takes apart its `::KEY:value::` lists).
"""

from __future__ import annotations

import csv
import json
import sys
from importlib import metadata
from pathlib import Path

COLUMNS = ("CWE-ID", "Name", "Weakness Abstraction", "Status", "Description", "Extended Description",
           "Applicable Platforms", "Common Consequences", "Potential Mitigations")


def main() -> None:
    import cwe2

    package = Path(cwe2.__file__).resolve().parent
    databases = sorted(package.glob("database_v*"))
    if not databases:
        raise SystemExit("cwe2 ships no database_v*/ folder")
    database = databases[-1]
    csv.field_size_limit(16 * 1024 * 1024)
    with open(database / "navigate_cwe" / "1000.csv", encoding="utf-8", newline="") as f:
        rows = [{c: row.get(c) or "" for c in COLUMNS} for row in csv.DictReader(f)]
    catalogue = sorted(p.stem.removeprefix("cwec_") for p in database.glob("cwec_v*.xml"))
    json.dump({"version": metadata.version("cwe2"), "catalogue": catalogue[-1] if catalogue else "",
               "rows": rows}, sys.stdout, sort_keys=True)


if __name__ == "__main__":
    main()
