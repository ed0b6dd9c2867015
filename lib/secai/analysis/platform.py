"""Platform rules for Kubernetes manifests: what a cluster refuses, and settings it ignores.

A fix can make a scanner happy and still be no fix: the API server may refuse the object, the
kubelet may refuse to start the container, or the runtime may ignore the setting the fix added.
The fix verification (secai.analysis.verify) asks `introduced(original, fixed)` for every YAML or
JSON file it fixes and rejects a fix that brings in a problem the original file did not have (a
problem the file had before the fix is never held against it).

Every document of the file is read (PyYAML, all documents; `kind: List` items too). A pod spec is
found where Kubernetes keeps it: Pod `spec`; PodTemplate `template.spec`; Deployment, StatefulSet,
DaemonSet, ReplicaSet, ReplicationController and Job `spec.template.spec`; CronJob
`spec.jobTemplate.spec.template.spec`. Each of its containers, initContainers and
ephemeralContainers is checked with the pod's securityContext merged under its own, field by
field, as the kubelet does (k8s.io/kubernetes pkg/securitycontext/util.go,
DetermineEffectiveSecurityContext: the container's runAsUser, runAsGroup, runAsNonRoot,
seLinuxOptions, seccompProfile, appArmorProfile and windowsOptions win where it sets them, the
pod's apply where it does not; privileged, allowPrivilegeEscalation, capabilities and
readOnlyRootFilesystem exist on the container only).

Rejected (REJECTED):
- `allowPrivilegeEscalation: false` with `privileged: true` in one container's securityContext.
  The API server's validation (pkg/apis/core/validation/validation.go, ValidateSecurityContext)
  answers "cannot set `allowPrivilegeEscalation` to false and `privileged` to true"; the same
  function refuses `allowPrivilegeEscalation: false` with `capabilities.add` holding
  `CAP_SYS_ADMIN` ("... and `capabilities.Add` CAP_SYS_ADMIN"; it compares that exact string).
- `runAsNonRoot: true` with `runAsUser: 0` in the effective context. The kubelet refuses to create
  the container (pkg/kubelet/kuberuntime/security_context_others.go, verifyRunAsNonRoot: "container's
  runAsUser breaks non-root policy"); the pod never runs.

- An object in a namespace that the file does not create (a Namespace object before it) and that
  is none of those every cluster has: the API server refuses it (namespaces "N" not found). Only a
  namespace the original file did not use already counts against a fix.
- A pod that names a Secret, ConfigMap, ServiceAccount or PersistentVolumeClaim (env, envFrom,
  volumes, imagePullSecrets, serviceAccountName; optional ones aside) that the file defines only in
  other namespaces: names resolve in the pod's own namespace, and the pod does not start.

No effect (NO_EFFECT), across objects: a Service (spec.selector) or NetworkPolicy
(podSelector.matchLabels) that selects pods of the file only in other namespaces: both act on the
pods of their own namespace only, so the Service gets no endpoints and the policy guards nothing. An
object without `namespace:` is in the one it is applied to, which is the same for all of them.

No effect (NO_EFFECT), on a container with `privileged: true`:
- `capabilities.drop`: a privileged container gets every capability whatever it asks to drop
  (containerd's CRI plugin applies oci.WithPrivileged, all capabilities, over the requested set;
  CRI-O sets privileged capabilities instead of the requested ones).
- `seccompProfile` (other than Unconfined): "It is not possible to apply a seccomp profile to a
  container running with privileged: true set in the container's securityContext. Privileged
  containers always run as Unconfined." (kubernetes.io/docs/tutorials/security/seccomp/). A pod-level
  profile counts as ignored only when every container that inherits it is privileged.
- `readOnlyRootFilesystem: true`: the runtime mounts the root read-only, but a privileged container
  holds CAP_SYS_ADMIN and remounts it read-write with one `mount -o remount,rw /`; it protects
  nothing.

    introduced(original_text, fixed_text)   # [Problem, ...]: what the fix brings in, sorted
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import yaml

REJECTED = "rejected"      # the API server or the kubelet refuses the object
NO_EFFECT = "no effect"    # a setting the platform ignores on this container

LANGUAGES = frozenset({"yaml", "json"})  # files that may hold Kubernetes manifests
_FAST = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the same documents, ~10x faster
CONTAINER_FIELDS = ("containers", "initContainers", "ephemeralContainers")
# where each kind keeps its pod spec (a path of keys from the document's top)
POD_SPEC = {"Pod": ("spec",), "PodTemplate": ("template", "spec"),
            **{k: ("spec", "template", "spec") for k in
               ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "ReplicationController", "Job")},
            "CronJob": ("spec", "jobTemplate", "spec", "template", "spec")}
# securityContext fields a container inherits from the pod's (DetermineEffectiveSecurityContext)
SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")  # every cluster has them
INHERITED = ("runAsUser", "runAsGroup", "runAsNonRoot", "seLinuxOptions", "seccompProfile", "appArmorProfile",
             "windowsOptions")


@dataclass(frozen=True, order=True)
class Problem:
    """One platform problem: whether it is refused or ignored, where (object and container), which
    rule; `message` says it in words (not part of its identity)."""

    kind: str       # REJECTED or NO_EFFECT
    where: str      # "Deployment demo-app, container demo-app"
    rule: str       # a short stable name of the rule
    message: str = field(compare=False)

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


def _get(data, path: tuple[str, ...]):
    for key in path:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def _mapping(value) -> dict:
    return value if isinstance(value, dict) else {}


def _is_true(value) -> bool:
    return value is True


def _objects(docs):
    """(kind, name, pod spec) of every object with a pod spec, `kind: List` items included."""
    for doc in docs:
        if not isinstance(doc, dict):
            continue
        kind = doc.get("kind")
        if kind == "List" and isinstance(doc.get("items"), list):
            yield from _objects(doc["items"])
        elif isinstance(kind, str) and kind in POD_SPEC:
            spec = _get(doc, POD_SPEC[kind])
            if isinstance(spec, dict):
                name = _get(doc, ("metadata", "name"))
                yield kind, name if isinstance(name, str) else "(unnamed)", spec


def _containers(spec: dict):
    """(label, container) of every container of a pod spec."""
    for fld in CONTAINER_FIELDS:
        items = spec.get(fld)
        for i, c in enumerate(items if isinstance(items, list) else []):
            if isinstance(c, dict):
                name = c.get("name")
                what = {"containers": "container", "initContainers": "init container",
                        "ephemeralContainers": "ephemeral container"}[fld]
                yield f"{what} {name}" if isinstance(name, str) else f"{fld}[{i}]", c


def effective(pod: dict, container: dict) -> dict:
    """The container's securityContext with the pod's merged under it, field by field."""
    own = _mapping(container.get("securityContext"))
    merged = {k: v for k, v in _mapping(pod.get("securityContext")).items() if k in INHERITED and v is not None}
    merged.update({k: v for k, v in own.items() if v is not None})
    return merged


def _seccomp_set(profile) -> bool:
    return isinstance(profile, dict) and profile.get("type") not in (None, "Unconfined")


def pod_problems(kind: str, name: str, spec: dict) -> set[Problem]:
    """The problems of one pod spec (see the module's description)."""
    found: set[Problem] = set()
    pod_sc = _mapping(spec.get("securityContext"))
    inheritors = []  # privileged or not, of the containers that take the pod's seccomp profile
    for label, c in _containers(spec):
        where = f"{kind} {name}, {label}"
        own = _mapping(c.get("securityContext"))
        sc = effective(spec, c)
        privileged = _is_true(own.get("privileged"))
        caps = _mapping(own.get("capabilities"))
        adds = caps.get("add") if isinstance(caps.get("add"), list) else []
        if own.get("allowPrivilegeEscalation") is False:
            if privileged:
                found.add(Problem(REJECTED, where, "no-escalation-privileged",
                                  "cannot set `allowPrivilegeEscalation` to false and `privileged` to true "
                                  "(the API server refuses the object)"))
            if "CAP_SYS_ADMIN" in adds:
                found.add(Problem(REJECTED, where, "no-escalation-sys-admin",
                                  "cannot set `allowPrivilegeEscalation` to false and `capabilities.Add` "
                                  "CAP_SYS_ADMIN (the API server refuses the object)"))
        user = sc.get("runAsUser")
        if _is_true(sc.get("runAsNonRoot")) and type(user) is int and user == 0:
            found.add(Problem(REJECTED, where, "non-root-uid-0",
                              "runAsNonRoot is true and runAsUser is 0: the kubelet refuses to start the "
                              "container (container's runAsUser breaks non-root policy)"))
        if own.get("seccompProfile") is None:
            inheritors.append(privileged)
        if not privileged:
            continue
        if isinstance(caps.get("drop"), list) and caps["drop"]:
            found.add(Problem(NO_EFFECT, where, "privileged-drop",
                              "capabilities.drop has no effect: a privileged container has every capability"))
        if _seccomp_set(own.get("seccompProfile")):
            found.add(Problem(NO_EFFECT, where, "privileged-seccomp",
                              "seccompProfile has no effect: privileged containers always run Unconfined"))
        if _is_true(own.get("readOnlyRootFilesystem")):
            found.add(Problem(NO_EFFECT, where, "privileged-read-only-root",
                              "readOnlyRootFilesystem protects nothing: a privileged container can remount "
                              "its root filesystem read-write"))
    if _seccomp_set(pod_sc.get("seccompProfile")) and inheritors and all(inheritors):
        found.add(Problem(NO_EFFECT, f"{kind} {name}, pod securityContext", "privileged-seccomp",
                          "the pod's seccompProfile has no effect: every container that inherits it is "
                          "privileged, and privileged containers always run Unconfined"))
    return found


def _documents(docs):
    """Every object of the file in order, `kind: List` items included."""
    for doc in docs:
        if isinstance(doc, dict) and doc.get("kind") == "List" and isinstance(doc.get("items"), list):
            yield from _documents(doc["items"])
        elif isinstance(doc, dict) and isinstance(doc.get("kind"), str):
            yield doc


def _namespace(doc: dict):
    """The object's namespace as written; None: the one it is applied to (kubectl -n, the context's)."""
    ns = _get(doc, ("metadata", "namespace"))
    return ns if isinstance(ns, str) and ns else None


def _pod_labels(doc: dict) -> dict:
    path = POD_SPEC.get(doc["kind"])
    return _mapping(_get(doc, path[:-1] + ("metadata", "labels"))) if path else {}


def _selects(selector, labels: dict) -> bool:
    return isinstance(selector, dict) and bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def _references(spec: dict):
    """(kind, name) of the namespaced objects a pod spec names: Secrets, ConfigMaps, the service
    account, persistent volume claims (optional references aside)."""
    for key in ("serviceAccountName", "serviceAccount"):
        if isinstance(spec.get(key), str) and spec[key] != "default":
            yield "ServiceAccount", spec[key]
    for ref in spec.get("imagePullSecrets") or []:
        if isinstance(ref, dict) and isinstance(ref.get("name"), str):
            yield "Secret", ref["name"]
    for vol in spec.get("volumes") or []:
        vol = _mapping(vol)
        for kind, key, fld in (("Secret", "secret", "secretName"), ("ConfigMap", "configMap", "name"),
                               ("PersistentVolumeClaim", "persistentVolumeClaim", "claimName")):
            src = _mapping(vol.get(key))
            if isinstance(src.get(fld), str) and src.get("optional") is not True:
                yield kind, src[fld]
    for _, c in _containers(spec):
        for env in c.get("env") or []:
            source = _mapping(_mapping(env).get("valueFrom"))
            for kind, key in (("Secret", "secretKeyRef"), ("ConfigMap", "configMapKeyRef")):
                ref = _mapping(source.get(key))
                if isinstance(ref.get("name"), str) and ref.get("optional") is not True:
                    yield kind, ref["name"]
        for env in c.get("envFrom") or []:
            for kind, key in (("Secret", "secretRef"), ("ConfigMap", "configMapRef")):
                ref = _mapping(_mapping(env).get(key))
                if isinstance(ref.get("name"), str) and ref.get("optional") is not True:
                    yield kind, ref["name"]


def namespace_problems(docs: list) -> set[Problem]:
    """What the file's namespaces break: an object in a namespace the file neither creates (a
    Namespace object before it) nor is one every cluster has; a Service or NetworkPolicy that
    selects pods of the file only in other namespaces (both act on pods of their own namespace
    only: the Service gets no endpoints, the policy guards nothing); a pod that names a Secret,
    ConfigMap, ServiceAccount or claim that the file defines only in other namespaces (the kubelet
    or the controller cannot find it, and the pod does not start)."""
    found: set[Problem] = set()
    objects = list(_documents(docs))
    created = set(SYSTEM_NAMESPACES)
    for doc in objects:
        ns, name = _namespace(doc), _get(doc, ("metadata", "name"))
        if doc["kind"] == "Namespace" and isinstance(name, str):
            created.add(name)
        elif ns is not None and ns not in created:
            found.add(Problem(REJECTED, f"namespace {ns}", "namespace-not-created",
                              f"{doc['kind']} {name} is in namespace {ns}, which the file does not create before "
                              f"it (the API server refuses an object in a namespace that does not exist)"))
    pods = [(doc, _namespace(doc), _pod_labels(doc)) for doc in objects if doc["kind"] in POD_SPEC]
    for doc in objects:
        kind, ns, name = doc["kind"], _namespace(doc), _get(doc, ("metadata", "name"))
        selector = (_get(doc, ("spec", "selector")) if kind == "Service"
                    else _get(doc, ("spec", "podSelector", "matchLabels")) if kind == "NetworkPolicy" else None)
        chosen = [(p, pns) for p, pns, labels in pods if _selects(selector, labels)]
        if chosen and all(pns != ns for _, pns in chosen):
            p, pns = chosen[0]
            found.add(Problem(NO_EFFECT, f"{kind} {name}", "selects-other-namespace",
                              f"{kind} {name} (namespace {ns or 'of the apply'}) selects the pods of {p['kind']} "
                              f"{_get(p, ('metadata', 'name'))}, which is in namespace {pns or 'of the apply'}: it "
                              f"acts only on pods of its own namespace"))
    defined: dict[tuple[str, str], set] = {}
    for doc in objects:
        if isinstance(name := _get(doc, ("metadata", "name")), str):
            defined.setdefault((doc["kind"], name), set()).add(_namespace(doc))
    for doc, ns, _ in pods:
        spec = _mapping(_get(doc, POD_SPEC[doc["kind"]]))
        for ref in _references(spec):
            if ref in defined and ns not in defined[ref]:
                found.add(Problem(REJECTED, f"{doc['kind']} {_get(doc, ('metadata', 'name'))}", "reference-namespace",
                                  f"it uses {ref[0]} {ref[1]}, which the file defines only in another namespace "
                                  f"(a pod can use only those of its own namespace; it does not start)"))
    return found


def problems(text: str) -> set[Problem]:
    """The platform problems of a manifest's text (none when it is not YAML, or holds no pod)."""
    return set(_problems(text))


@lru_cache(maxsize=16)  # a manifest's text, judged once for each fix proposed in it
def _problems(text: str) -> frozenset[Problem]:
    try:
        docs = list(yaml.load_all(text, Loader=_FAST))  # libyaml; what it refuses, the Python loader decides
    except yaml.YAMLError:
        try:
            docs = list(yaml.safe_load_all(text))
        except yaml.YAMLError:
            return set()
    found: set[Problem] = set()
    for kind, name, spec in _objects(docs):
        found |= pod_problems(kind, name, spec)
    return frozenset(found | namespace_problems(docs))


def introduced(original: str, fixed: str) -> list[Problem]:
    """The problems of `fixed` that `original` does not have, refusals first, in a stable order."""
    return sorted(problems(fixed) - problems(original), key=lambda p: (p.kind != REJECTED, p))
