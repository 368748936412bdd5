#!/usr/bin/env python3
"""The Kubernetes object schemas inside the chart's values.schema.json.

The chart passes some values straight into the Pod and NetworkPolicy (security
contexts, env, extra volumes and mounts, tolerations, affinity, resource
claims, egress rules). Their schemas are the Kubernetes ones, closed
(`additionalProperties: false` at every level, as the API server's strict field
validation), copied from the OpenAPI that kubernetes-validate bundles for the
Kubernetes version asdo is built against (k8s-openapi feature v1_33 in
Cargo.toml): a key the schema allows is one asdo's types keep, so Helm and asdo
render the same object. Descriptions and x-kubernetes-* annotations are
dropped; a few enums the API server enforces in code are added (ENUMS).

  k8s_schema.py --write   regenerate the io.k8s.* definitions in place
  k8s_schema.py --check   fail when they differ from what would be generated (CI)
"""
import argparse
import json
import os
import sys

import kubernetes_validate

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCHEMA = os.path.join(ROOT, "charts", "agentic-sdlc-orchestrator", "values.schema.json")
KUBE_VERSION = "1.33.0"  # = the k8s-openapi feature in Cargo.toml
ROOTS = [
    "io.k8s.api.core.v1.PodSecurityContext",
    "io.k8s.api.core.v1.SecurityContext",
    "io.k8s.api.core.v1.EnvVar",
    "io.k8s.api.core.v1.Volume",
    "io.k8s.api.core.v1.VolumeMount",
    "io.k8s.api.core.v1.Toleration",
    "io.k8s.api.core.v1.Affinity",
    "io.k8s.api.core.v1.ResourceClaim",
    "io.k8s.api.networking.v1.NetworkPolicyEgressRule",
]
# Enforced by the API server's validation code, not its OpenAPI. null stays
# allowed where the OpenAPI allows it.
ENUMS = {
    ("io.k8s.api.core.v1.SeccompProfile", "type"): ["RuntimeDefault", "Localhost", "Unconfined"],
    ("io.k8s.api.core.v1.AppArmorProfile", "type"): ["RuntimeDefault", "Localhost", "Unconfined"],
    ("io.k8s.api.core.v1.Toleration", "operator"): ["Exists", "Equal", ""],
    ("io.k8s.api.core.v1.Toleration", "effect"): ["NoSchedule", "PreferNoSchedule", "NoExecute", ""],
    ("io.k8s.api.networking.v1.NetworkPolicyPort", "protocol"): ["TCP", "UDP", "SCTP"],
    ("io.k8s.api.core.v1.VolumeMount", "mountPropagation"): ["None", "HostToContainer", "Bidirectional"],
}
KEEP = {"type", "properties", "additionalProperties", "items", "required", "$ref", "enum"}


def bundled(version):
    base = os.path.join(os.path.dirname(kubernetes_validate.__file__), "kubernetes-json-schema",
                        f"v{version}-local-strict", "_definitions.json")
    return json.load(open(base))["$defs"]


def clean(node):
    if isinstance(node, list):
        return [clean(x) for x in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for k, v in node.items():
        if k == "properties":
            out[k] = {p: clean(s) for p, s in sorted(v.items())}
        elif k == "$ref":
            out[k] = "#/definitions/" + v.rsplit("/", 1)[-1]
        elif k == "oneOf":
            # int-or-string and quantity: both branches accept null, which
            # oneOf (exactly one) would then refuse.
            out["anyOf"] = clean(v)
        elif k in KEEP:
            out[k] = clean(v)
    return out


def refs(node):
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "$ref":
                yield v.rsplit("/", 1)[-1]
            else:
                yield from refs(v)
    elif isinstance(node, list):
        for x in node:
            yield from refs(x)


def generate():
    defs = bundled(KUBE_VERSION)
    out, todo = {}, list(ROOTS)
    while todo:
        name = todo.pop()
        if name in out:
            continue
        out[name] = clean(defs[name])
        todo += list(refs(defs[name]))
    for (name, field), values in ENUMS.items():
        prop = out[name]["properties"][field]
        t = prop.get("type")
        prop["enum"] = values + ([None] if isinstance(t, list) and "null" in t else [])
    return dict(sorted(out.items()))


def main():
    ap = argparse.ArgumentParser()
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--write", action="store_true")
    g.add_argument("--check", action="store_true")
    args = ap.parse_args()
    schema = json.load(open(SCHEMA))
    own = {k: v for k, v in schema["definitions"].items() if not k.startswith("io.k8s.")}
    generated = generate()
    current = {k: v for k, v in schema["definitions"].items() if k.startswith("io.k8s.")}
    if args.check:
        if current != generated:
            missing = sorted(set(generated) - set(current))
            extra = sorted(set(current) - set(generated))
            changed = sorted(k for k in set(current) & set(generated) if current[k] != generated[k])
            print(f"FAIL values.schema.json's Kubernetes definitions differ from Kubernetes {KUBE_VERSION}: "
                  f"missing {missing}, extra {extra}, changed {changed}; run tests/chart/k8s_schema.py --write",
                  file=sys.stderr)
            return 1
        print(f"{len(generated)} Kubernetes {KUBE_VERSION} definitions in values.schema.json, closed, up to date")
        return 0
    schema["definitions"] = {**own, **generated}
    with open(SCHEMA, "w") as f:
        json.dump(schema, f, indent=2, ensure_ascii=False)
        f.write("\n")
    print(f"wrote {len(generated)} definitions into {os.path.relpath(SCHEMA, ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
