"""OWASP ZAP reports: JSON/XML twins, plain-text conversion, instance caps, hostile XML."""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import orjson
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from conftest import FIXTURES, run_command  # noqa: E402

from secai import config  # noqa: E402
from secai.commands.parse import Parse  # noqa: E402
from secai.parsing.formats.zap import plain  # noqa: E402

JSON_CASES = sorted((FIXTURES / "parse" / "zap-json").glob("*.json"))
XML_CASES = sorted((FIXTURES / "parse" / "zap-xml").glob("*.xml"))


def parse(path: Path) -> list[dict]:
    code, records, err = run_command(Parse, ["-q", str(path)])
    assert code == 0, err
    return records


def without_source(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "source"} for r in records]


def test_json_and_xml_of_one_scan_give_the_same_findings():
    json_records = parse(FIXTURES / "parse" / "zap-json" / "notes-app-scan.json")
    xml_records = parse(FIXTURES / "parse" / "zap-xml" / "notes-app-scan.xml")
    assert len(json_records) == 5
    assert [r["id"] for r in json_records] == [r["id"] for r in xml_records]
    assert without_source(json_records) == without_source(xml_records)
    assert {r["source"]["format"] for r in json_records} == {"zap-json"}
    assert {r["source"]["format"] for r in xml_records} == {"zap-xml"}


@pytest.mark.parametrize("case", JSON_CASES + XML_CASES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_prose_is_plain_text(case):
    for rec in parse(case):
        for field in ("description", "fix_hint", "message"):
            value = rec.get(field, "")
            assert "<p>" not in value and "</p>" not in value and "&lt;" not in value and "&#39;" not in value


def test_plain_keeps_paragraphs_and_quoted_markup():
    assert plain("<p>One &amp; two</p><p></p><p>Three</p>") == "One & two\n\nThree"
    assert plain("<P>a<br/>b</P><ul><li>c</li></ul>") == "a\nb\nc"
    assert plain("<p>found <b>\"<!-- db -->\"</b> near <script></p>") == 'found "<!-- db -->" near <script>'
    assert plain(None) == ""


def _many_instances_report(n: int, syntax: str) -> bytes:
    instances = [{"uri": f"http://localhost:8080/page/{i}", "method": "GET", "param": "",
                  "attack": "", "evidence": "x" * 3000 if i == 0 else "", "otherinfo": ""} for i in range(n)]
    alert = {"pluginid": "10038", "alertRef": "10038", "alert": "Content Security Policy (CSP) Header Not Set",
             "riskcode": "2", "confidence": "3", "riskdesc": "Medium (High)", "count": str(n), "cweid": "693"}
    if syntax == "json":
        site = {"@name": "http://localhost:8080", "alerts": [{**alert, "instances": instances}]}
        return orjson.dumps({"@version": "2.15.0", "@generated": "Tue, 14 May 2024 09:12:44", "site": [site]})
    root = ET.Element("OWASPZAPReport", version="2.15.0")
    item = ET.SubElement(ET.SubElement(ET.SubElement(root, "site", name="http://localhost:8080"), "alerts"), "alertitem")
    for key, value in alert.items():
        ET.SubElement(item, key).text = value
    listed = ET.SubElement(item, "instances")
    for inst in instances:
        element = ET.SubElement(listed, "instance")
        for key, value in inst.items():
            ET.SubElement(element, key).text = value
    return ET.tostring(root, xml_declaration=True, encoding="utf-8")


@pytest.mark.parametrize("syntax", ["json", "xml"])
def test_instances_are_capped_and_the_total_kept(tmp_path, syntax):
    report = tmp_path / f"many.{syntax}"
    report.write_bytes(_many_instances_report(150, syntax))
    (rec,) = parse(report)
    limit = config.get("parse", "max_instances")
    assert limit < 150
    assert len(rec["instances"]) == limit
    assert rec["instance_count"] == 150
    assert rec["endpoint"] == rec["instances"][0]
    assert rec["endpoint"]["url"] == "http://localhost:8080/page/0"
    assert len(rec["endpoint"]["evidence"]) == 2000
    assert rec["instances"][-1]["url"] == f"http://localhost:8080/page/{limit - 1}"


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE OWASPZAPReport [
  <!ENTITY lol "lol">
  <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
  <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
  <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
  <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
<OWASPZAPReport version="2.15.0"><site name="http://localhost:8080"><alerts><alertitem>
<pluginid>10038</pluginid><alert>&lol4;</alert></alertitem></alerts></site></OWASPZAPReport>
"""

EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE OWASPZAPReport [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<OWASPZAPReport version="2.15.0"><site name="http://localhost:8080"><alerts><alertitem>
<pluginid>10038</pluginid><alert>CSP</alert><desc>&xxe;</desc></alertitem></alerts></site></OWASPZAPReport>
"""


@pytest.mark.parametrize("content", [BILLION_LAUGHS, EXTERNAL_ENTITY], ids=["billion-laughs", "external-entity"])
def test_hostile_xml_is_refused_with_one_line(tmp_path, content):
    report = tmp_path / "zap-report.xml"
    report.write_bytes(content)
    code, records, err = run_command(Parse, [str(report)])
    assert code == 1
    assert records == []
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert str(report) in lines[0]
    assert "Traceback" not in err and "root:x:" not in err
