"""A small kustomize renderer for the subset our manifests use (no kustomize binary here).

Supported: `resources` (files, and folders holding a kustomization.yaml), `namespace`,
`configMapGenerator` with `files`/`literals` and `disableNameSuffixHash: true`, `images`
(name/newName/newTag), and `patches` that are strategic-merge files targeting a resource by
kind and name, with Kubernetes' merge keys for the lists we patch. Anything else raises
`Unsupported`, so this renderer can never silently differ from kustomize: the manifests have to
stay within what it understands, or this file grows with them.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

__all__ = ["Unsupported", "render"]

Doc = dict[str, Any]

SUPPORTED_KEYS = {
    "apiVersion",
    "kind",
    "resources",
    "namespace",
    "configMapGenerator",
    "images",
    "patches",
}
# Strategic-merge keys of the lists we patch (from the Kubernetes API's patchMergeKey); other
# lists are replaced whole, as kustomize does.
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "volumes": "name",
    "env": "name",
    "ports": "containerPort",
    "volumeMounts": "mountPath",
    "imagePullSecrets": "name",
}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"}
POD_OWNERS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "ReplicaSet"}


class Unsupported(ValueError):
    """The kustomization uses a feature this renderer does not implement."""


def _load_docs(path: Path) -> list[Doc]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _merge(base: Any, patch: Any, key: str | None = None) -> Any:
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for k, v in patch.items():
            out[k] = _merge(base[k], v, k) if k in base else copy.deepcopy(v)
        return out
    if isinstance(base, list) and isinstance(patch, list) and key in MERGE_KEYS:
        mk = MERGE_KEYS[key]
        out_list = [copy.deepcopy(item) for item in base]
        for item in patch:
            match = next((i for i, b in enumerate(out_list) if b.get(mk) == item.get(mk)), None)
            if match is None:
                out_list.append(copy.deepcopy(item))
            else:
                out_list[match] = _merge(out_list[match], item)
        return out_list
    return copy.deepcopy(patch)


def _pod_spec(doc: Doc) -> Doc | None:
    if doc.get("kind") in POD_OWNERS:
        return doc["spec"]["template"]["spec"]
    return None


def _set_image(image: str, rules: list[Doc]) -> str:
    name, _, tag = image.rpartition(":") if ":" in image.split("/")[-1] else (image, "", "")
    for rule in rules:
        if rule["name"] == name:
            unknown = set(rule) - {"name", "newName", "newTag"}
            if unknown:
                raise Unsupported(f"images fields {sorted(unknown)}")
            name = rule.get("newName", name)
            tag = str(rule.get("newTag", tag))
            return f"{name}:{tag}" if tag else name
    return image


def _config_map(gen: Doc, root: Path) -> Doc:
    unknown = set(gen) - {"name", "files", "literals", "options"}
    if unknown or gen.get("options") != {"disableNameSuffixHash": True}:
        raise Unsupported(f"configMapGenerator {gen.get('name')}: {sorted(unknown) or 'options'}")
    data: dict[str, str] = {}
    for entry in gen.get("files", []):
        path = (root / entry).resolve()
        if root.resolve() not in path.parents:
            raise Unsupported(f"{entry}: kustomize loads files only from inside {root}")
        data[path.name] = path.read_text()
    for literal in gen.get("literals", []):
        k, _, v = literal.partition("=")
        data[k] = v
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": gen["name"]},
        "data": data,
    }


def render(root: Path) -> list[Doc]:
    """The resources `kubectl kustomize root` would print, in resource order."""
    kfile = root / "kustomization.yaml"
    k = yaml.safe_load(kfile.read_text())
    unknown = set(k) - SUPPORTED_KEYS
    if unknown:
        raise Unsupported(f"{kfile}: {sorted(unknown)}")

    docs: list[Doc] = []
    for entry in k.get("resources", []):
        path = root / entry
        docs += render(path) if path.is_dir() else _load_docs(path)
    docs += [_config_map(g, root) for g in k.get("configMapGenerator", [])]

    for patch_entry in k.get("patches", []):
        if set(patch_entry) != {"path"}:
            raise Unsupported(f"patch {patch_entry}: only strategic-merge files by path")
        for patch in _load_docs(root / patch_entry["path"]):
            name = patch["metadata"]["name"]
            hits = [
                i
                for i, d in enumerate(docs)
                if d["kind"] == patch["kind"] and d["metadata"]["name"] == name
            ]
            if len(hits) != 1:
                raise Unsupported(f"patch {patch_entry['path']} matches {len(hits)} resources")
            docs[hits[0]] = _merge(docs[hits[0]], patch)

    namespace = k.get("namespace")
    images = k.get("images", [])
    for doc in docs:
        if namespace and doc["kind"] not in CLUSTER_SCOPED:
            doc["metadata"]["namespace"] = namespace
            if doc["kind"] == "RoleBinding":
                for subject in doc.get("subjects", []):
                    if subject.get("kind") == "ServiceAccount":
                        subject["namespace"] = namespace
        spec = _pod_spec(doc)
        if spec and images:
            for container in spec.get("containers", []) + spec.get("initContainers", []):
                container["image"] = _set_image(container["image"], images)
    return docs
