"""The one YAML key-path editor (secai.analysis.yamlset), called directly: what both of its callers
rely on (the fix rules' `set` through set_key, checkov's expectations through yaml_change), and the
cases it refuses."""

from __future__ import annotations

import re

import pytest

from secai.analysis.fixlines import Line
from secai.analysis.iacedit import Change, Unfixable
from secai.analysis.yamlset import holder, items, set_key, yaml_change

POD = ["spec:", "  containers:", "  - name: a", "    securityContext:", "      capabilities:",
       "        drop:", "        - CHOWN", "  - name: b", "    securityContext: null  # none yet"]


def rows(texts: list[str]) -> list[Line]:
    return [Line(i, t, True) for i, t in enumerate(texts)]


def texts(lines: list[Line]) -> list[str]:
    return [ln.text for ln in lines]


def test_each_item_gets_the_members_it_lacks_and_a_null_mapping_its_first_key():
    lines = rows(POD)
    out = set_key(lines, ("securityContext", "capabilities", "drop"), "[ALL]", items(lines, 1), None, "  ")
    assert texts(out) == POD[:7] + ["        - ALL", "  - name: b", "    securityContext:  # none yet",
                                    "      capabilities:", "        drop: [ALL]"]


def test_a_value_keep_accepts_stays_and_one_already_set_is_not_touched():
    doc = ["spec:", "  runAsUser: 20000", "  runAsNonRoot: true"]
    lines = rows(doc)
    target = [holder(lines, 1)]
    assert texts(set_key(lines, ("runAsUser",), "10001", target, re.compile(r"[1-9]\d{4,}"), "  ")) == doc
    assert texts(set_key(lines, ("runAsNonRoot",), "true", target, None, "  ")) == doc
    assert not any(ln.changed for ln in lines)
    assert texts(set_key(lines, ("runAsUser",), "10001", target, None, "  "))[1] == "  runAsUser: 10001"


def test_the_key_and_its_comment_stay_as_written():
    doc = ["Bucket:", "  Properties:", '    "Enabled":   "false"  # was off']
    assert yaml_change(doc, 0, 2, ("Bucket", "Properties", "Enabled"), Change("set", True))[2] == \
        '    "Enabled":   true  # was off'
    assert yaml_change(doc, 0, 2, ("Bucket", "Properties", "Key"), Change("expr", "!GetAtt K.Arn"))[3:] == \
        ["    Key: !GetAtt K.Arn"]


def test_members_are_dropped_when_others_remain():
    doc = ["spec:", "  allowed: [a, b]  # two", "  block:", "  - a", "  - b"]
    assert yaml_change(doc, 0, 4, ("spec", "allowed"), Change("drop", ["a"]))[1] == "  allowed: [b]  # two"
    assert yaml_change(doc, 0, 4, ("spec", "block"), Change("drop", ["a"])) == doc[:3] + ["  - b"]
    with pytest.raises(Unfixable, match="every member"):
        yaml_change(doc, 0, 4, ("spec", "block"), Change("drop", ["a", "b"]))


@pytest.mark.parametrize("doc, path, shape", [
    (["spec:", "  privileged:", "    nested: 1"], ("spec", "privileged"), True),   # a block where a value goes
    (["spec:", "  ctx: {a: 1}"], ("spec", "ctx", "a"), True),                     # a flow mapping on the path
    (["spec:", "  ctx:", "  - a: 1"], ("spec", "ctx", "a"), True),                # a list on the path
    (["spec:", "  privileged: 1"], ("spec", "privileged"), False),                # a value of another kind
])
def test_what_is_not_mechanical_is_refused(doc, path, shape):
    with pytest.raises(Unfixable):
        yaml_change(doc, 0, len(doc) - 1, path, Change("set", False))
    lines = rows(doc)
    if shape:  # the fix rules' YAML text is not checked for its kind, but refuses the same shapes
        with pytest.raises(Unfixable):
            set_key(lines, path[1:], "false", [holder(lines, 1)], None, "  ")
