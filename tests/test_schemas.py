"""The schemas resolve offline for any standard validator: each record schema's `$id` is its own
file name (relative), every `$ref` is a fragment of its own document or the name of a file in
schemas/, so a validator given the folder's documents (or reading them from disk) never needs the
network. Checked with stock `jsonschema` and a `referencing.Registry` built only from schemas/,
whose retrieval fails the test on any attempt to fetch."""

from __future__ import annotations

import copy

import jsonschema
import orjson
import pytest
import referencing
from conftest import ROOT, run_command
from referencing.exceptions import NoSuchResource

from secai.records import SCHEMA_DIR

pytestmark = pytest.mark.usefixtures("no_network")

SCHEMAS = sorted(SCHEMA_DIR.glob("*.json"))


def refs(node):
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            yield node["$ref"]
        for value in node.values():
            yield from refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from refs(value)


def test_the_package_reads_the_checkouts_schemas():
    assert SCHEMA_DIR == ROOT / "schemas" and len(SCHEMAS) >= 10


@pytest.mark.parametrize("path", SCHEMAS, ids=lambda p: p.name)
def test_every_id_and_ref_resolves_inside_the_folder(path):
    schema = orjson.loads(path.read_bytes())
    if path.name.endswith(".schema.json"):  # secai's own: the id is the file's name
        assert schema["$id"] == path.name
    names = {p.name for p in SCHEMAS}
    for ref in refs(schema):
        target = ref.split("#", 1)[0]
        assert target == "" or target in names, f"{path.name}: $ref {ref!r} leaves schemas/"


def offline_registry() -> referencing.Registry:
    """Every record schema of the folder, by its $id; anything else is a failed fetch."""
    def retrieve(uri: str):
        raise AssertionError(f"the validator tried to fetch {uri}")

    resources = []
    for path in SCHEMA_DIR.glob("*.schema.json"):
        schema = orjson.loads(path.read_bytes())
        resources.append((schema["$id"], referencing.Resource.from_contents(schema)))
    return referencing.Registry(retrieve=retrieve).with_resources(resources)


def validator(kind: str) -> jsonschema.Draft202012Validator:
    schema = orjson.loads((SCHEMA_DIR / f"{kind}.schema.json").read_bytes())
    return jsonschema.Draft202012Validator(schema, registry=offline_registry())


@pytest.fixture(scope="module")
def records(findings):
    """finding/1, analysis/1 and example/1 records of the shipped examples, made by the commands."""
    from secai.commands.analyze import Analyze
    from secai.commands.narrate import Narrate

    lines = b"".join(orjson.dumps(f) + b"\n" for f in findings[:8])
    code, analyses, err = run_command(Analyze, ["-q", "--backend", "kb", "--no-cache"], stdin=lines)
    assert code == 0, err
    lines = b"".join(orjson.dumps(a) + b"\n" for a in analyses)
    code, examples, err = run_command(Narrate, ["-q", "--stage", "analysis"], stdin=lines)
    assert code == 0, err
    return {"finding": findings[:8], "analysis": analyses, "example": examples}


@pytest.mark.parametrize("kind", ["finding", "analysis", "example"])
def test_stock_jsonschema_validates_records_offline(records, kind):
    v = validator(kind)
    assert records[kind]
    for record in records[kind]:
        v.validate(record)


def test_the_analysis_schema_follows_its_ref_to_the_finding_schema(records):
    """The `$ref` is followed (not skipped): a finding that breaks finding.schema.json breaks the analysis."""
    bad = copy.deepcopy(records["analysis"][0])
    bad["finding"]["severity"] = "catastrophic"
    errors = list(validator("analysis").iter_errors(bad))
    assert errors and any("catastrophic" in e.message for e in errors)


def test_without_the_documents_the_ref_is_unresolvable_not_fetched(records):
    """A registry that lacks finding.schema.json fails to resolve it, and never goes to the network."""
    def retrieve(uri: str):
        raise NoSuchResource(ref=uri)

    schema = orjson.loads((SCHEMA_DIR / "analysis.schema.json").read_bytes())
    v = jsonschema.Draft202012Validator(schema, registry=referencing.Registry(retrieve=retrieve))
    with pytest.raises(referencing.exceptions.Unresolvable):
        v.validate(records["analysis"][0])
