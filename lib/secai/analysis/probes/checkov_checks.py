"""Every check checkov ships, as JSON on stdout (run by secai.analysis.harvest with the scanners'
own interpreter: `SCANNERS_DIR/python checkov_checks.py`; it imports only the standard library and
checkov, never secai).

The registries are the ones checkov's own docs_generator.py walks: each framework's Python check
registries (resource, data, provider, module, parameter, jobs, ...) and its graph registry (the
CKV2 YAML/JSON checks), plus the secrets check ids. Per check: id, name, framework, entity kind,
supported resources, categories, guideline; its base class (value check, negative-value check,
Kubernetes omitted-or-value check, graph check, other) and, for the value checks, the inspected key,
the expected or forbidden values and the result when the key is missing; for graph checks, the
condition tree (attribute, operator, value, resource types) and the attribute conditions every
match must meet (reached from the root through `and` only). checkov's ANY_VALUE sentinel is
recorded as the flag any_value, every value made JSON (other objects as their str()).
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import sys

os.environ.setdefault("LOG_LEVEL", "ERROR")
logging.disable(logging.CRITICAL)

# (framework, entity kind, module, registry attribute): checkov/docs_generator.py's list
REGISTRIES = [
    ("terraform", "resource", "checkov.terraform.checks.resource.registry", "resource_registry"),
    ("terraform", "data", "checkov.terraform.checks.data.registry", "data_registry"),
    ("terraform", "provider", "checkov.terraform.checks.provider.registry", "provider_registry"),
    ("terraform", "module", "checkov.terraform.checks.module.registry", "module_registry"),
    ("cloudformation", "resource", "checkov.cloudformation.checks.resource.registry", "cfn_registry"),
    ("kubernetes", "resource", "checkov.kubernetes.checks.resource.registry", "registry"),
    ("serverless", "resource", "checkov.serverless.registry", "sls_registry"),
    ("dockerfile", "dockerfile", "checkov.dockerfile.registry", "registry"),
    ("github_configuration", "github_configuration", "checkov.github.registry", "registry"),
    ("github_actions", "jobs", "checkov.github_actions.checks.registry", "registry"),
    ("gitlab_ci", "jobs", "checkov.gitlab_ci.checks.registry", "registry"),
    ("gitlab_configuration", "gitlab_configuration", "checkov.gitlab.registry", "registry"),
    ("bitbucket_configuration", "bitbucket_configuration", "checkov.bitbucket.registry", "registry"),
    ("bitbucket_pipelines", "bitbucket_pipelines", "checkov.bitbucket_pipelines.registry", "registry"),
    ("circleci_pipelines", "circleci_pipelines", "checkov.circleci_pipelines.registry", "registry"),
    ("argo_workflows", "argo_workflows", "checkov.argo_workflows.checks.registry", "registry"),
    ("azure_pipelines", "azure_pipelines", "checkov.azure_pipelines.checks.registry", "registry"),
    ("arm", "resource", "checkov.arm.registry", "arm_resource_registry"),
    ("arm", "parameter", "checkov.arm.registry", "arm_parameter_registry"),
    ("bicep", "parameter", "checkov.bicep.checks.param.registry", "registry"),
    ("bicep", "resource", "checkov.bicep.checks.resource.registry", "registry"),
    ("openapi", "resource", "checkov.openapi.checks.registry", "openapi_registry"),
    ("ansible", "resource", "checkov.ansible.checks.registry", "registry"),
]
GRAPH_FRAMEWORKS = ["terraform", "cloudformation", "kubernetes", "dockerfile", "github_actions", "arm", "bicep",
                    "ansible"]
# base class name -> kind; the first in a check's MRO wins
BASES = {"BaseResourceNegativeValueCheck": "negative_value", "BaseResourceValueCheck": "value",
         "BaseAnsibleTaskValueCheck": "value", "BaseSpecOmittedOrValueCheck": "omitted_or_value"}
ANY_VALUE = "CKV_ANY"
MAX_DEPTH = 6


def jsonable(value):
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple, set, frozenset)):
        items = [jsonable(v) for v in value]
        return sorted(items, key=repr) if isinstance(value, (set, frozenset)) else items
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    return str(getattr(value, "value", value)) if hasattr(value, "name") and hasattr(value, "value") else str(value)


def names(values) -> list[str]:
    return sorted({str(getattr(v, "name", v)) for v in values or ()})


def result_name(value) -> str | None:
    return None if value is None else str(getattr(value, "name", value))


def call(check, method: str):
    fn = getattr(check, method, None)
    if fn is None:
        return None, False
    try:
        return fn(), True
    except Exception:  # an abstract default (NotImplementedError) or a value computed per resource
        return None, False


def value_facts(check) -> dict:
    kind = next((BASES[c.__name__] for c in type(check).__mro__ if c.__name__ in BASES), "other")
    out = {"check": kind, "inspected_key": None, "expected": None, "any_value": False, "forbidden": None,
           "missing": None}
    if kind == "other":
        return out
    key, ok = call(check, "get_inspected_key")
    out["inspected_key"] = key if ok and isinstance(key, str) else None
    if kind == "negative_value":
        forbidden, ok = call(check, "get_forbidden_values")
        if ok:
            forbidden = list(forbidden) if isinstance(forbidden, (list, tuple, set)) else [forbidden]
            out["any_value"] = ANY_VALUE in forbidden
            out["forbidden"] = jsonable([v for v in forbidden if v != ANY_VALUE])
        out["missing"] = result_name(getattr(check, "missing_attribute_result", None))
    else:
        expected, ok = call(check, "get_expected_values")
        if not ok:
            value, ok = call(check, "get_expected_value")
            expected = [value] if ok else None
        if expected is not None:
            expected = list(expected) if isinstance(expected, (list, tuple, set)) else [expected]
            out["any_value"] = ANY_VALUE in expected
            out["expected"] = jsonable([v for v in expected if v != ANY_VALUE])
        missing = "PASSED" if kind == "omitted_or_value" else None
        out["missing"] = result_name(getattr(check, "missing_block_result", None)) or missing
    return out


def condition(node, depth: int = 0) -> dict:
    """A graph check's (sub)condition, trimmed to what it tests."""
    out = {"operator": str(node.operator or ""), "type": str(getattr(node.type, "value", node.type) or "")}
    if node.attribute is not None:
        out["attribute"] = str(node.attribute)
    if node.attribute_value is not None:
        out["value"] = jsonable(node.attribute_value)
    if node.resource_types:
        out["resource_types"] = sorted(map(str, node.resource_types))
    if node.connected_resources_types:
        out["connected_resource_types"] = sorted(map(str, node.connected_resources_types))
    if node.sub_checks and depth < MAX_DEPTH:
        out["checks"] = [condition(s, depth + 1) for s in node.sub_checks]
    return out


def required(cond: dict) -> list[dict]:
    """The attribute conditions a match must meet: the root's, or those under `and` nodes only."""
    if "attribute" in cond and cond.get("type", "").lower() == "attribute":
        return [{k: cond[k] for k in ("attribute", "operator", "value", "resource_types") if k in cond}]
    if cond.get("operator") == "and":
        return [c for sub in cond.get("checks", ()) for c in required(sub)]
    return []


def python_checks(framework: str, entity: str, registry) -> list[dict]:
    out, seen = [], set()
    for _, check in registry.all_checks():
        if id(check) in seen:
            continue
        seen.add(id(check))
        out.append({"id": check.id, "name": check.name, "framework": framework, "entity": entity,
                    "resources": sorted(map(str, check.supported_entities or ())),
                    "categories": names(check.categories), "guideline": check.guideline or None,
                    **value_facts(check), "condition": None, "conditions": []})
    return out


def graph_checks(framework: str) -> list[dict]:
    from checkov.common.checks_infra.registry import get_graph_checks_registry

    registry = get_graph_checks_registry(framework)
    registry.load_checks()
    out = []
    for check in registry.checks:
        cond = condition(check)
        out.append({"id": check.id, "name": check.name, "framework": framework, "entity": "resource",
                    "resources": sorted(map(str, check.resource_types or ())),
                    "categories": [check.category] if check.category else [], "guideline": check.guideline or None,
                    "check": "graph", "inspected_key": None, "expected": None, "any_value": False,
                    "forbidden": None, "missing": None, "condition": cond, "conditions": required(cond)})
    return out


def secrets_checks() -> list[dict]:
    from checkov.secrets.runner import CHECK_ID_TO_SECRET_TYPE

    return [{"id": cid, "name": str(kind), "framework": "secrets", "entity": "secrets", "resources": [],
             "categories": ["SECRETS"], "guideline": None, "check": "other", "inspected_key": None, "expected": None,
             "any_value": False, "forbidden": None, "missing": None, "condition": None, "conditions": []}
            for cid, kind in CHECK_ID_TO_SECRET_TYPE.items() if cid != "CKV_SECRET_10"]  # an intermediate step


def main() -> None:
    from checkov.version import version

    checks, skipped = [], []
    for framework, entity, module, attr in REGISTRIES:
        try:
            checks += python_checks(framework, entity, getattr(importlib.import_module(module), attr))
        except Exception as exc:  # a framework this checkov does not ship: said, not fatal
            skipped.append(f"{framework}/{entity}: {type(exc).__name__}: {exc}")
    for framework in GRAPH_FRAMEWORKS:
        try:
            checks += graph_checks(framework)
        except Exception as exc:
            skipped.append(f"{framework}/graph: {type(exc).__name__}: {exc}")
    try:
        checks += secrets_checks()
    except Exception as exc:
        skipped.append(f"secrets: {type(exc).__name__}: {exc}")
    json.dump({"version": version, "checks": checks, "skipped": skipped}, sys.stdout, sort_keys=True)


if __name__ == "__main__":
    main()
