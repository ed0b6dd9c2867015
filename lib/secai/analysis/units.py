"""The enclosing unit of a finding's lines: the innermost unit a person would name around them,
found in the file's tree-sitter tree.

    enclosing_unit(tree, "python", "app/service.py", 12, 14)
    # {"kind": "method", "name": "Service.run", "start_line": 10, "end_line": 20}

- code: function / method / constructor / class / interface / enum / object (Kotlin) / type (Go);
  a method is named `Class.method` (qualified by its enclosing classes only); a JavaScript or Go
  function without a name of its own takes the name it is assigned to, and one passed as an
  argument is a `callback` named after the function it is passed to (`app.get`); other anonymous
  functions and lambdas are not units;
- Terraform/HCL: the top-level block: `resource` `aws_s3_bucket.x`, `data` `aws_iam_policy.p`,
  `module` `vpc`, `variable`, `output`, `provider`, `locals`, `terraform`;
- YAML: Kubernetes: the innermost container (`containers`, `initContainers`,
  `ephemeralContainers` items: kind `container`, its name), else the object (kind: its `kind`
  such as `Deployment`, name `metadata.name`, `namespace/name` when namespaced); GitHub
  workflows: `step` (its name, else id, else `uses`), else `job` (its id), else `workflow` (its
  name); Compose files: `service`; any other YAML: the innermost key whose value is a mapping or
  list, kind `key`, name the dotted key path (`[i]` for list items);
- Dockerfile: the build stage, kind `stage`, named by its `AS` alias, else its image; lines
  before the first FROM (global ARGs): the `instruction` (named by its keyword).
"""

from __future__ import annotations

import json
import re
from pathlib import PurePosixPath

from secai.analysis.platform import CONTAINER_FIELDS


# ---------------------------------------------------------------- tree nodes

def _rows(node) -> tuple[int, int]:
    """1-based first and last line of a node (a node ending at column 0 ends on the line before)."""
    first, last = node.start_point[0] + 1, node.end_point[0] + 1
    if node.end_point[1] == 0 and last > first:
        last -= 1
    return first, last


def _text(node) -> str:
    return node.text.decode("utf-8", "replace") if node is not None else ""


def _contains(node, first: int, last: int) -> bool:
    a, b = _rows(node)
    return a <= first and last <= b


# ---------------------------------------------------------------- enclosing: code

_CODE_KINDS = {
    "python": {"function_definition": "function", "class_definition": "class"},
    "java": {"class_declaration": "class", "record_declaration": "record", "interface_declaration": "interface",
             "enum_declaration": "enum", "annotation_type_declaration": "interface",
             "method_declaration": "method", "constructor_declaration": "constructor",
             "compact_constructor_declaration": "constructor"},
    "kotlin": {"class_declaration": "class", "object_declaration": "object", "companion_object": "object",
               "function_declaration": "function", "secondary_constructor": "constructor"},
    "javascript": {"function_declaration": "function", "generator_function_declaration": "function",
                   "function_expression": "function", "function": "function", "generator_function": "function",
                   "arrow_function": "function", "method_definition": "method", "class_declaration": "class",
                   "class": "class"},
    "go": {"function_declaration": "function", "method_declaration": "method", "func_literal": "function",
           "type_spec": "type"},
    "shell": {"function_definition": "function"},
}
_CODE_KINDS["typescript"] = _CODE_KINDS["tsx"] = {
    **_CODE_KINDS["javascript"], "abstract_class_declaration": "class", "interface_declaration": "interface",
    "enum_declaration": "enum",
}
_CLASSLIKE = {"class", "record", "interface", "enum", "object", "type"}
_ANONYMOUS = {"function_expression", "function", "generator_function", "arrow_function", "class", "func_literal"}


def _assigned_name(node) -> tuple[str, str] | None:
    """(kind, name) of an anonymous function or class from where it stands: assigned to a variable,
    a property or a field, or passed as an argument (a callback, named after the callee)."""
    parent = node.parent
    if parent is None:
        return None
    if parent.type == "expression_list" and parent.named_child_count == 1:  # Go: x := func() {}
        parent = parent.parent
    t = parent.type
    if t == "variable_declarator":
        return "", _text(parent.child_by_field_name("name"))
    if t == "pair":
        return "", _text(parent.child_by_field_name("key")).strip("\"'`")
    if t in ("assignment_expression", "assignment_statement", "short_var_declaration", "var_spec"):
        left = parent.child_by_field_name("left") or parent.child_by_field_name("name")
        return ("", _text(left)) if left is not None and left.end_byte <= node.start_byte else None
    if t in ("public_field_definition", "field_definition"):
        key = parent.child_by_field_name("name") or parent.child_by_field_name("property")
        return ("method", _text(key)) if key is not None else None
    if t in ("arguments", "argument_list") and parent.parent is not None:
        callee = parent.parent.child_by_field_name("function")
        if callee is not None:
            return "callback", " ".join(_text(callee).split())[:80]
    return None


def _code_unit(node, grammar: str, kinds: dict) -> tuple[str, str | None, tuple[int, int]] | None:
    """(kind, own name, rows) when `node` is a unit of this grammar, else None."""
    kind = kinds.get(node.type)
    if kind is None:
        return None
    rows = _rows(node)
    if node.parent is not None and node.parent.type == "decorated_definition":  # Python decorators
        rows = (_rows(node.parent)[0], rows[1])
    name_node = node.child_by_field_name("name")
    name = _text(name_node) or None
    if grammar == "go" and node.type == "method_declaration":
        receiver = node.child_by_field_name("receiver")
        types = [d.child_by_field_name("type") for d in (receiver.named_children if receiver else [])]
        recv = re.sub(r"\[.*\]$", "", _text(types[0]).lstrip("*").strip()) if types and types[0] else ""
        name = f"{recv}.{name}" if recv and name else name
    elif grammar == "kotlin" and node.type == "class_declaration":
        if any(c.type == "interface" for c in node.children):
            kind = "interface"
    elif grammar == "kotlin" and node.type == "companion_object":
        name = name or "Companion"
    if kind == "method" and name == "constructor" and grammar in ("javascript", "typescript", "tsx"):
        kind = "constructor"
    if name is None and node.type in _ANONYMOUS:
        assigned = _assigned_name(node)
        if assigned is None or not assigned[1]:
            return None
        kind, name = assigned[0] or kind, assigned[1]
    return kind, name, rows


def _enclosing_code(tree, grammar: str, first: int, last: int) -> dict | None:
    kinds = _CODE_KINDS[grammar]
    found = None           # the innermost unit so far
    scope: list[str] = []  # names of the class-like units around it (a function resets it)
    node = tree.root_node
    while True:
        child = next((c for c in node.named_children if _contains(c, first, last)), None)
        if child is None:
            return found
        if child.type == "decorated_definition":  # Python: the definition, with its decorators' lines
            child = child.child_by_field_name("definition") or child
        unit = _code_unit(child, grammar, kinds)
        if unit is not None:
            kind, name, rows = unit
            if kind == "function" and found and found["kind"] in _CLASSLIKE - {"type"}:
                kind = "method"  # a function directly in a class body (Python, Kotlin)
            qualified = ".".join(scope + [name]) if name and kind in _CLASSLIKE | {"method", "constructor"} else name
            found = {"kind": kind, "start_line": rows[0], "end_line": rows[1]}
            if qualified:
                found["name"] = qualified
            if kind not in _CLASSLIKE:
                scope = []  # units inside a function are named on their own
            elif name:
                scope = scope + [name]
        node = child


# ---------------------------------------------------------------- enclosing: HCL / Terraform

def _enclosing_hcl(tree, first: int, last: int) -> dict | None:
    body = next((c for c in tree.root_node.named_children if c.type == "body"), None)
    for block in (body.named_children if body is not None else []):
        if block.type != "block" or not _contains(block, first, last):
            continue
        kind, labels = "", []
        for c in block.named_children:
            if c.type == "identifier" and not kind:
                kind = _text(c)
            elif c.type in ("string_lit", "identifier"):
                labels.append(_text(c).strip('"'))
            elif c.type in ("block_start", "body"):
                break
        if not kind:
            return None
        rows = _rows(block)
        found = {"kind": kind, "start_line": rows[0], "end_line": rows[1]}
        name = ".".join(labels)
        if name:
            found["name"] = name
        return found
    return None


# ---------------------------------------------------------------- enclosing: YAML

_YAML_WRAPPERS = ("block_node", "flow_node")
_YAML_EXTRAS = ("anchor", "tag", "comment")


def _yval(node):
    """The collection or scalar inside block_node/flow_node wrappers (anchors and tags skipped)."""
    while node is not None and node.type in _YAML_WRAPPERS:
        node = next((c for c in node.named_children if c.type not in _YAML_EXTRAS), None)
    return node


def _yscalar(node) -> str | None:
    node = _yval(node)
    if node is None:
        return None
    raw = _text(node)
    if node.type == "plain_scalar":
        return raw.strip()
    if node.type == "double_quote_scalar":
        try:
            return json.loads(raw)
        except ValueError:
            return raw[1:-1]
    if node.type == "single_quote_scalar":
        return raw[1:-1].replace("''", "'")
    return None


def _ypairs(node) -> list[tuple[str | None, object, object]]:
    """(key, value node, pair node) of a mapping node; [] for anything else."""
    node = _yval(node)
    if node is None or node.type not in ("block_mapping", "flow_mapping"):
        return []
    return [(_yscalar(p.child_by_field_name("key")), p.child_by_field_name("value"), p)
            for p in node.named_children if p.type in ("block_mapping_pair", "flow_pair")]


def _yitems(node) -> list:
    """(item value, item node) of a sequence node; [] for anything else."""
    node = _yval(node)
    if node is None:
        return []
    if node.type == "block_sequence":
        return [(next((c for c in item.named_children if c.type != "comment"), None), item)
                for item in node.named_children if item.type == "block_sequence_item"]
    if node.type == "flow_sequence":
        return [(c, c) for c in node.named_children if c.type == "flow_node"]
    return []


def _ymap(node) -> dict:
    return {k: v for k, v, _ in _ypairs(node) if k is not None}


def _is_collection(node) -> bool:
    node = _yval(node)
    return node is not None and node.type in ("block_mapping", "flow_mapping", "block_sequence", "flow_sequence")


def _k8s_object(node) -> tuple[str, str | None] | None:
    m = _ymap(node)
    kind = _yscalar(m.get("kind")) if "apiVersion" in m and "kind" in m else None
    if not kind:
        return None
    meta = _ymap(m.get("metadata"))
    name, namespace = _yscalar(meta.get("name")), _yscalar(meta.get("namespace"))
    return kind, (f"{namespace}/{name}" if namespace and name else name)


def _enclosing_yaml(tree, path: str, first: int, last: int) -> dict | None:
    name = PurePosixPath(path).name.lower()
    workflow_dir = "/.github/workflows/" in "/" + path
    action = name in ("action.yml", "action.yaml")
    compose = bool(re.fullmatch(r"(docker-)?compose([-.\w]*)\.ya?ml", name))
    found: list[tuple[str, str | None, tuple[int, int]]] = []

    def hit(kind, unit_name, node):
        found.append((kind, unit_name or None, _rows(node)))

    def walk(value, keypath: str, doc: str, depth: int) -> None:
        obj = _k8s_object(value)
        if obj is not None:
            hit(obj[0], obj[1], _yval(value))
        for key, child, pair in _ypairs(value):
            if not _contains(pair, first, last):
                continue
            sub = f"{keypath}.{key}" if keypath else str(key)
            if doc == "workflow" and depth == 0 and key == "jobs":
                for job, job_value, job_pair in _ypairs(child):
                    if _contains(job_pair, first, last):
                        hit("job", job, job_pair)
                        walk(job_value, f"jobs.{job}", "job", 1)
                return
            if doc == "compose" and depth == 0 and key == "services":
                for svc, svc_value, svc_pair in _ypairs(child):
                    if _contains(svc_pair, first, last):
                        hit("service", svc, svc_pair)
                        walk(svc_value, f"services.{svc}", "service", 1)
                return
            if key == "steps" and (doc == "job" or (action and keypath == "runs")):
                for item_value, item in _yitems(child):
                    if _contains(item, first, last):
                        step = _ymap(item_value)
                        label = next((_yscalar(step.get(k)) for k in ("name", "id", "uses") if _yscalar(step.get(k))), None)
                        hit("step", label, item)
                return
            if key in CONTAINER_FIELDS and doc == "k8s":
                for item_value, item in _yitems(child):
                    if _contains(item, first, last):
                        hit("container", _yscalar(_ymap(item_value).get("name")), item)
                        walk(item_value, sub, doc, depth + 1)
                return
            if doc == "generic" and _is_collection(child):
                hit("key", sub, pair)
            walk(child, sub, doc, depth + 1)
            return
        for i, (item_value, item) in enumerate(_yitems(value)):
            if _contains(item, first, last):
                sub = f"{keypath}[{i}]"
                if doc == "generic" and _is_collection(item_value):
                    hit("key", sub, item)
                walk(item_value, sub, doc, depth + 1)
                return

    tops = [top for document in tree.root_node.named_children if document.type == "document"
            if (top := next((c for c in document.named_children if c.type in _YAML_WRAPPERS), None)) is not None]
    for n, top in enumerate(tops):
        a, b = _rows(top)  # a range that begins on a document's `---`, or runs on to the next one's, is its own
        if first < a <= last and (n == 0 or _rows(tops[n - 1])[1] < first):
            first = a
        if a <= first <= b < last and (n + 1 == len(tops) or last < _rows(tops[n + 1])[0]):
            last = b
        if not _contains(top, first, last):
            continue
        keys = _ymap(top)
        if "jobs" in keys and ("on" in keys or workflow_dir):
            doc = "workflow"
            hit("workflow", _yscalar(keys.get("name")), _yval(top))
        elif compose or (workflow_dir is False and "services" in keys and _is_collection(keys["services"])
                         and "apiVersion" not in keys and "openapi" not in keys and "swagger" not in keys):
            doc = "compose"
        elif _k8s_object(top) is not None or "apiVersion" in keys:
            doc = "k8s"
        else:
            doc = "generic"
        walk(top, "", doc, 0)
        break
    if not found:
        return None
    kind, unit_name, rows = found[-1]
    out = {"kind": kind, "start_line": rows[0], "end_line": rows[1]}
    if unit_name:
        out["name"] = unit_name
    return out


# ---------------------------------------------------------------- enclosing: Dockerfile

def _enclosing_dockerfile(tree, first: int, last: int) -> dict | None:
    instructions = [c for c in tree.root_node.named_children if c.type.endswith("_instruction")]
    stages: list[tuple[object, list]] = []
    for node in instructions:
        if node.type == "from_instruction":
            stages.append((node, [node]))
        elif stages:
            stages[-1][1].append(node)
    for frm, members in stages:
        a, b = _rows(frm)[0], _rows(members[-1])[1]
        if a <= first and last <= b:
            alias = frm.child_by_field_name("as")
            image = next((c for c in frm.named_children if c.type == "image_spec"), None)
            name = _text(alias) or _text(image)
            out = {"kind": "stage", "start_line": a, "end_line": b}
            if name:
                out["name"] = name
            return out
    for node in instructions:
        if _contains(node, first, last):
            a, b = _rows(node)
            return {"kind": "instruction", "name": node.type.removesuffix("_instruction").upper(),
                    "start_line": a, "end_line": b}
    return None


def enclosing_unit(tree, grammar: str, path: str, first: int, last: int) -> dict | None:
    """The innermost unit around lines first..last of the file at `path` (its parsed `tree`, of
    grammar `grammar`): {kind, name?, start_line, end_line}, or None."""
    if tree is None:
        return None
    if grammar in _CODE_KINDS:
        return _enclosing_code(tree, grammar, first, last)
    if grammar == "hcl":
        return _enclosing_hcl(tree, first, last)
    if grammar == "yaml":
        return _enclosing_yaml(tree, path, first, last)
    if grammar == "dockerfile":
        return _enclosing_dockerfile(tree, first, last)
    return None
