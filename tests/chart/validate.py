#!/usr/bin/env python3
"""Schema-check rendered manifests (run by .ci/chart-checks.sh).

Built-in kinds are validated strictly (unknown fields are errors) with
kubernetes-validate's bundled OpenAPI schemas, for every --k8s version given.
kubernetes-validate only warns when it has no schema for a kind, which would let
a built-in kind with a mistyped apiVersion pass; here a missing schema is an
error unless the kind is one of the CRDs below. Those CRDs' schemas are not
bundled (and can't be fetched offline), so they get a structural check of the
fields this project relies on instead; that is NOT a CRD schema validation.

Also enforced for every document: no `Secret` objects and no inline
`env[].value` for names that look like credentials, so no secret value can be
rendered into a manifest.

Usage: validate.py --k8s 1.33.0 [--k8s 1.37.0 ...] FILE...
"""
import argparse
import re
import sys

import kubernetes_validate
import yaml

# (apiVersion, kind) -> checker. Not in kubernetes-validate's schemas.
CRDS = {}


def crd(api_version, kind):
    def register(fn):
        CRDS[(api_version, kind)] = fn
        return fn
    return register


def need(obj, path, errors, typ=str):
    """Follow a dotted path; report when missing or of the wrong type."""
    cur = obj
    for part in path.split("."):
        if not isinstance(cur, dict) or part not in cur:
            errors.append(f"missing {path}")
            return None
        cur = cur[part]
    if typ is not None and not isinstance(cur, typ):
        errors.append(f"{path} should be {typ.__name__}, is {type(cur).__name__}")
        return None
    return cur


def only_keys(obj, allowed, where, errors):
    if isinstance(obj, dict):
        extra = sorted(set(obj) - set(allowed))
        if extra:
            errors.append(f"unexpected keys in {where}: {', '.join(extra)}")


@crd("external-secrets.io/v1", "ExternalSecret")
def check_external_secret(doc):
    e = []
    spec = need(doc, "spec", e, dict) or {}
    only_keys(spec, ["refreshInterval", "refreshPolicy", "secretStoreRef", "target", "data", "dataFrom"], "spec", e)
    ri = need(doc, "spec.refreshInterval", e)
    if ri is not None and not re.fullmatch(r"([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+|0", ri):
        e.append(f"spec.refreshInterval {ri!r} is not a Go duration")
    need(doc, "spec.secretStoreRef.name", e)
    kind = need(doc, "spec.secretStoreRef.kind", e)
    if kind not in (None, "SecretStore", "ClusterSecretStore"):
        e.append(f"spec.secretStoreRef.kind {kind!r}")
    need(doc, "spec.target.name", e)
    if doc.get("spec", {}).get("target", {}).get("creationPolicy") not in ("Owner", "Orphan", "Merge", "None"):
        e.append("spec.target.creationPolicy must be Owner, Orphan, Merge or None")
    data = need(doc, "spec.data", e, list) or []
    keys = []
    for i, item in enumerate(data):
        only_keys(item, ["secretKey", "remoteRef", "sourceRef"], f"spec.data[{i}]", e)
        keys.append(need(item, "secretKey", e))
        need(item, "remoteRef.key", e)
        only_keys(item.get("remoteRef", {}), ["key", "property", "version", "conversionStrategy",
                                              "decodingStrategy", "metadataPolicy"], f"spec.data[{i}].remoteRef", e)
        if not (item.get("remoteRef") or {}).get("key"):
            e.append(f"spec.data[{i}].remoteRef.key is empty")
        # ESO 0.16-2.8 default these in the CRD; left out, the live object differs
        # from Git forever and ArgoCD selfHeal fights the API server.
        for field, default in (("conversionStrategy", "Default"), ("decodingStrategy", "None"),
                               ("metadataPolicy", "None")):
            if (item.get("remoteRef") or {}).get(field) != default:
                e.append(f"spec.data[{i}].remoteRef.{field} must be rendered as {default!r} (the CRD default)")
    if "server-password" not in keys:
        e.append("no server-password entry")
    if len(keys) != len(set(keys)):
        e.append("duplicate secretKey")
    return e


@crd("argoproj.io/v1alpha1", "Application")
def check_application(doc):
    e = []
    need(doc, "metadata.name", e)
    need(doc, "metadata.namespace", e)
    spec = need(doc, "spec", e, dict) or {}
    only_keys(spec, ["project", "source", "sources", "destination", "syncPolicy", "ignoreDifferences",
                     "info", "revisionHistoryLimit"], "spec", e)
    need(doc, "spec.project", e)
    need(doc, "spec.source.repoURL", e)
    need(doc, "spec.source.targetRevision", e)
    need(doc, "spec.source.path", e)
    need(doc, "spec.source.helm.valueFiles", e, list)
    need(doc, "spec.destination.server", e)
    need(doc, "spec.destination.namespace", e)
    sp = need(doc, "spec.syncPolicy", e, dict) or {}
    only_keys(sp, ["automated", "syncOptions", "retry", "managedNamespaceMetadata"], "spec.syncPolicy", e)
    need(doc, "spec.syncPolicy.automated.prune", e, bool)
    need(doc, "spec.syncPolicy.automated.selfHeal", e, bool)
    for opt in sp.get("syncOptions", []):
        if not re.fullmatch(r"[A-Za-z]+=[A-Za-z0-9]+", str(opt)):
            e.append(f"syncOptions entry {opt!r} is not Key=Value")
    return e


@crd("argoproj.io/v1alpha1", "AppProject")
def check_app_project(doc):
    e = []
    need(doc, "metadata.name", e)
    need(doc, "metadata.namespace", e)
    spec = need(doc, "spec", e, dict) or {}
    only_keys(spec, ["description", "sourceRepos", "destinations", "clusterResourceWhitelist",
                     "namespaceResourceWhitelist", "clusterResourceBlacklist", "namespaceResourceBlacklist",
                     "roles", "orphanedResources", "syncWindows", "sourceNamespaces", "signatureKeys"], "spec", e)
    for r in need(doc, "spec.sourceRepos", e, list) or []:
        if r in ("*", "") or not isinstance(r, str):
            e.append(f"sourceRepos entry {r!r}: name the repository")
    for i, d in enumerate(need(doc, "spec.destinations", e, list) or []):
        only_keys(d, ["server", "name", "namespace"], f"spec.destinations[{i}]", e)
        if d.get("server") in (None, "*") or d.get("namespace") in (None, "*"):
            e.append(f"spec.destinations[{i}] must name a server and a namespace pattern")
    for field in ("clusterResourceWhitelist", "namespaceResourceWhitelist"):
        for i, k in enumerate(need(doc, f"spec.{field}", e, list) or []):
            only_keys(k, ["group", "kind"], f"spec.{field}[{i}]", e)
            if "*" in (k.get("group"), k.get("kind")) or not isinstance(k.get("kind"), str):
                e.append(f"spec.{field}[{i}] {k}: no wildcards")
    return e


def check_local_queue(doc):
    """Kueue's LocalQueue CRD (v1beta1 and v1beta2 have the same spec): the fields of
    config/components/crd/bases/kueue.x-k8s.io_localqueues.yaml, Kueue 0.13 to 0.19."""
    e = []
    need(doc, "metadata.name", e)
    need(doc, "metadata.namespace", e)
    spec = need(doc, "spec", e, dict) or {}
    only_keys(spec, ["clusterQueue", "stopPolicy", "fairSharing"], "spec", e)
    cq = need(doc, "spec.clusterQueue", e)
    if cq is not None and not re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*", cq):
        e.append(f"spec.clusterQueue {cq!r} is not a DNS-1123 subdomain")
    if spec.get("stopPolicy", "None") not in ("None", "Hold", "HoldAndDrain"):
        e.append("spec.stopPolicy must be None, Hold or HoldAndDrain")
    return e


for _version in ("v1beta1", "v1beta2"):
    crd(f"kueue.x-k8s.io/{_version}", "LocalQueue")(check_local_queue)


# ASDO_MAX_TOKENS is a budget (a count of model tokens), not a credential; ASDO_SECRET_ENV
# lists the NAMES of the secret variables (so the agent can keep their values out of
# commits), never a value.
SECRETISH = re.compile(r"(PASSWORD|TOKEN(?!S$)|SECRET(?!_ENV$)|API_KEY|PRIVATE_KEY|CREDENTIAL)", re.I)


def no_secret_values(doc):
    """No Secret objects and no literal credential env values anywhere in a document."""
    e = []
    if doc.get("kind") == "Secret":
        e.append("renders a Secret: secret values belong in the external store (ExternalSecret)")

    def walk(node, path):
        if isinstance(node, dict):
            if isinstance(node.get("name"), str) and "value" in node and SECRETISH.search(node["name"]):
                e.append(f"{path}: env {node['name']} has a literal value; use valueFrom.secretKeyRef")
            for k, v in node.items():
                walk(v, f"{path}.{k}")
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{path}[{i}]")
    walk(doc, "")
    return e


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--k8s", action="append", required=True, help="Kubernetes version, e.g. 1.33.0")
    ap.add_argument("files", nargs="+")
    args = ap.parse_args()

    failures, counts = [], {"builtin": 0, "crd": 0}
    for path in args.files:
        with open(path) as f:
            docs = [d for d in yaml.safe_load_all(f) if d]
        for doc in docs:
            ident = f"{path}: {doc.get('kind')}/{(doc.get('metadata') or {}).get('name')}"
            for msg in no_secret_values(doc):
                failures.append(f"{ident}: {msg}")
            key = (doc.get("apiVersion"), doc.get("kind"))
            if key in CRDS:
                counts["crd"] += 1
                failures += [f"{ident} ({key[0]}, structural check): {m}" for m in CRDS[key](doc)]
                continue
            counts["builtin"] += 1
            for version in args.k8s:
                try:
                    kubernetes_validate.validate(doc, version, strict=True)
                except kubernetes_validate.ValidationError as err:
                    where = ".".join(str(p) for p in err.path)
                    failures.append(f"{ident}: Kubernetes {version} strict: {where}: {err.message}")
                except kubernetes_validate.SchemaNotFoundError as err:
                    failures.append(f"{ident}: {err.message} (not a known CRD either: add a check here)")
    for f in failures:
        print(f"FAIL {f}", file=sys.stderr)
    print(f"validated {counts['builtin']} built-in objects against Kubernetes {', '.join(args.k8s)} "
          f"(strict) and {counts['crd']} CRD objects structurally; {len(failures)} problem(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
