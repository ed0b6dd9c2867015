"""OWASP ZAP traditional reports, JSON (`zap-json`) and XML (`zap-xml`, including `xml-plus`).

Both syntaxes carry the same tree, report → sites → alerts → instances, and are read into one
intermediate dict per alert (ZAP's own field names, string values, `instances` a list of dicts)
that a single function turns into a finding, so the JSON and the XML of one scan give the same
records apart from `source`:
- JSON: {"@version", "@generated", "@programName", "site": [{"@name", "alerts": [{"pluginid",
  "alertRef", "alert", "riskcode", "confidence", "riskdesc", "desc", "instances": [{"uri",
  "method", "param", "attack", "evidence", "otherinfo"}], "count", "solution", "otherinfo",
  "reference", "cweid", "wascid", ...}]}]}; `site` may be a single object instead of a list.
- XML: <OWASPZAPReport version generated><site name><alerts><alertitem> with the same fields as
  child elements and <instances><instance>; extra elements (xml-plus request/response dumps,
  nodeName, systemic) are ignored. Old reports without <instances> list each instance's
  uri/method/param/attack/evidence directly in the alertitem, a repeated field starting the next
  instance; there the first <otherinfo> is the alert's.

Mapping:
- one finding per alert per site; its instances become `endpoint` (the first) and `instances`
  (at most parse.max_instances; `instance_count` keeps the total, the larger of `count` and the
  number listed, when more were listed than kept). Attack and evidence are kept verbatim (evidence
  cut to 2000 characters). An alert without instances gets its site as the endpoint;
- rule_id: `alertRef` when present, else `pluginid`. alertRef is the pluginid itself, or
  "<pluginid>-<n>" for the variants of one scan rule (10020-1 missing anti-clickjacking header,
  10020-2 multiple X-Frame-Options headers), which are distinct findings. Reports older than
  ZAP 2.10 have no alertRef, so a variant's rule id is then the bare pluginid;
- severity from riskcode: 3 high, 2 medium, 1 low, 0 info (else the word of riskdesc, else info);
  tool_severity is riskdesc ("Medium (High)"). confidence: 4 (user confirmed) and 3 high,
  2 medium, 1 low; 0 is an alert a user marked as a false positive in ZAP: kept as low confidence
  with `suppressed: true`, like other scanners' accepted suppressions;
- description, fix_hint and message (alert otherinfo, else the first instance's) are plain text:
  ZAP writes each line of these texts as a <p> paragraph, so "</p><p>" is one line break (an
  empty paragraph a blank line); any other run of <p>, <br>, list and div tags is one line break;
  a few inline tags (a, b, i, em, strong, code, span) are dropped; entities are unescaped. Other
  angle-bracket text (a quoted <script> or comment in otherinfo) is content and is kept;
- references: the http(s) URLs in `reference`; cwe from cweid (0 and -1 mean none);
  tags: "WASC-<wascid>".
Ids come from finding.finalize: tool, rule and the site of the endpoint, so one alert on one site
is one finding; ZAP lists an alert twice for one site when its instances differ in risk (some
versions: confidence), and those merge into one finding (occurrences 2).
"""

from __future__ import annotations

import html
import re

from secai import config
from secai.parsing.finding import (ParseError, as_dict, as_list, cwe_ids, positive_int, severity_from_word,
    text, unique)
from secai.parsing.formats import Format

RISK = {"3": "high", "2": "medium", "1": "low", "0": "info"}
CONFIDENCE = {"4": "high", "3": "high", "2": "medium", "1": "low", "0": "low"}
FALSE_POSITIVE = {"kind": "external", "status": "accepted", "justification": "marked as a false positive in ZAP"}
INSTANCE_FIELDS = ("uri", "method", "param", "attack", "evidence")
MAX_EVIDENCE = 2000
_PARAGRAPH = re.compile(r"</p\s*>\s*<p(?:\s[^>]*)?>", re.IGNORECASE)
_BLOCK = re.compile(r"(?:\s*</?(?:p|br|div|ul|ol|li)(?:\s[^>]*)?/?>)+\s*", re.IGNORECASE)
_INLINE = re.compile(r"</?(?:a|b|i|em|strong|code|span)(?:\s[^>]*)?>", re.IGNORECASE)
_URL = re.compile(r"https?://[^\s<>\"']+")


def plain(value) -> str:
    """ZAP's paragraph markup as plain text, one line per paragraph, at most one blank line in a row."""
    marked = _INLINE.sub("", _BLOCK.sub("\n", _PARAGRAPH.sub("\n", text(value))))
    lines = "\n".join(line.strip() for line in html.unescape(marked).splitlines())
    return re.sub(r"\n{3,}", "\n\n", lines).strip()


def _verbatim(value) -> str:
    """A payload or evidence exactly as sent or seen (a trailing space can matter: `' -- `)."""
    return value if isinstance(value, str) and value.strip() else text(value)


def _endpoint(instance: dict, site: str) -> dict | None:
    url = text(instance.get("uri")) or site
    if not url:
        return None
    return {"url": url, "method": text(instance.get("method")), "param": text(instance.get("param")),
            "attack": _verbatim(instance.get("attack")),
            "evidence": _verbatim(instance.get("evidence"))[:MAX_EVIDENCE]}


def _finding(alert: dict, site: str, version: str, where: str) -> dict:
    rule_id = text(alert.get("alertRef")) or text(alert.get("pluginid"))
    if not rule_id:
        raise ParseError("alert has neither pluginid nor alertRef", where)
    listed = alert["instances"] or ([alert] if text(alert.get("uri")) else [])
    kept = [e for e in (_endpoint(i, site) for i in listed[:config.get("parse", "max_instances")]) if e]
    total = max(positive_int(alert.get("count")) or 0, len(listed))
    confidence = text(alert.get("confidence"))
    severity = RISK.get(text(alert.get("riskcode"))) or severity_from_word(text(alert.get("riskdesc")).split("(")[0])
    wasc = positive_int(alert.get("wascid"))
    finding = {
        "tool": "zap",
        "tool_version": version,
        "category": "dast",
        "rule_id": rule_id,
        "title": text(alert.get("alert")) or text(alert.get("name")) or rule_id,
        "description": plain(alert.get("desc")),
        "message": plain(alert.get("otherinfo")) or (plain(listed[0].get("otherinfo")) if listed else ""),
        "severity": severity or "info",
        "tool_severity": text(alert.get("riskdesc")),
        "confidence": CONFIDENCE.get(confidence),
        "cwe": cwe_ids([positive_int(alert.get("cweid"))]),
        "references": unique(u.rstrip(".,;") for u in _URL.findall(plain(alert.get("reference")))),
        "fix_hint": plain(alert.get("solution")),
        "endpoint": kept[0] if kept else {"url": site},
        "instances": kept,
        "instance_count": total if total > len(kept) else None,
        "tags": [f"WASC-{wasc}"] if wasc else [],
    }
    if confidence == "0":
        finding.update(suppressed=True, suppression=FALSE_POSITIVE)
    return finding


# ---------------------------------------------------------------- JSON

def detect_json(doc) -> bool:
    return (isinstance(doc, dict) and isinstance(doc.get("site"), (list, dict))
            and any(key in doc for key in ("@version", "@generated", "@programName")))


def parse_json(doc: dict):
    version = text(doc.get("@version"))
    sites = doc["site"] if isinstance(doc["site"], list) else [doc["site"]]
    for s, raw_site in enumerate(sites):
        site = as_dict(raw_site, f"$.site[{s}]")
        for a, raw_alert in enumerate(as_list(site.get("alerts"), f"$.site[{s}].alerts")):
            where = f"$.site[{s}].alerts[{a}]"
            alert = dict(as_dict(raw_alert, where))
            alert["instances"] = [as_dict(inst, f"{where}.instances[{i}]")
                                  for i, inst in enumerate(as_list(alert.get("instances"), f"{where}.instances"))]
            yield _finding(alert, text(site.get("@name")), version, where)


# ---------------------------------------------------------------- XML

def detect_xml(root) -> bool:
    return root.tag == "OWASPZAPReport"


def _xml_alert(item) -> dict:
    """An <alertitem> as the intermediate dict (element text by tag, first occurrence wins)."""
    alert: dict = {}
    flat: list[dict] = []
    nested = item.find("instances") is not None
    for child in item:
        if child.tag == "instances":
            alert["instances"] = [{c.tag: c.text for c in inst} for inst in child.findall("instance")]
        elif child.tag in INSTANCE_FIELDS and not nested:
            if not flat or child.tag in flat[-1]:
                flat.append({})
            flat[-1][child.tag] = child.text
        else:
            alert.setdefault(child.tag, child.text)
    alert.setdefault("instances", flat)
    return alert


def parse_xml(root):
    version = text(root.get("version"))
    for s, site in enumerate(root.findall("site"), 1):
        for a, item in enumerate(site.findall("alerts/alertitem"), 1):
            yield _finding(_xml_alert(item), text(site.get("name")), version, f"site[{s}]/alerts/alertitem[{a}]")


FORMATS = [
    Format("zap-json", "json", "OWASP ZAP",
           'object with "site" and "@version"/"@generated"/"@programName" (traditional JSON report)',
           detect_json, parse_json),
    Format("zap-xml", "xml", "OWASP ZAP", "root element <OWASPZAPReport> (traditional XML and xml-plus reports)",
           detect_xml, parse_xml),
]
