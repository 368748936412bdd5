#!/usr/bin/env python3
"""The shipped GitOps path syncs as shipped (run by .ci/chart-checks.sh).

`kubectl kustomize releases/` (kubectl's built-in kustomize) must give the
AppProject and one Application per release, with the repository set from the
ONE marked line in releases/kustomization.yaml. To prove that line really is
the only one a fork changes, the check builds a copy with a different URL and
branch and requires every Application and the AppProject to carry them. Then,
per Application:

* source.path is a release directory tracked in this repository, and
  releaseName, the Application name and the directory agree (asdo derives the
  release name as agentic-sdlc-orchestrator-<env>);
* destination.namespace is the release's namespace.name;
* syncPolicy.retry with a backoff (a failed automated sync of a commit is
  otherwise never retried) and the AppProject as project;
* the AppProject allows that destination, and its namespaceResourceWhitelist
  covers every kind the release renders (from the rendered manifests given).

Usage: gitops_check.py --kubectl kubectl RENDERED_RELEASE.yaml...
"""
import argparse
import fnmatch
import os
import shutil
import subprocess
import sys
import tempfile

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHART = "agentic-sdlc-orchestrator"
FORK_URL = "https://git.example.com/someone/fork-of-asdo.git"
FORK_REV = "release-9"


def build(kubectl, releases_dir):
    r = subprocess.run([kubectl, "kustomize", releases_dir], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"kubectl kustomize {releases_dir} failed:\n{r.stderr}")
    return [d for d in yaml.safe_load_all(r.stdout) if d]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kubectl", default="kubectl")
    ap.add_argument("rendered", nargs="*", help="helm template output of the releases (release-<env>.yaml)")
    args = ap.parse_args()
    problems = []

    kust = os.path.join(ROOT, "releases", "kustomization.yaml")
    text = open(kust).read()
    marked = [l for l in text.splitlines() if "repoURL=" in l]
    if len(marked) != 1:
        problems.append(f"releases/kustomization.yaml: expected exactly one repoURL= line, found {len(marked)}")
    idx = text.splitlines().index(marked[0]) if marked else 0
    if marked and "CHANGE ME" not in text.splitlines()[idx - 1]:
        problems.append("releases/kustomization.yaml: the repoURL line is not marked '# CHANGE ME'")

    shipped = build(args.kubectl, os.path.join(ROOT, "releases"))
    urls = {d["spec"]["source"]["repoURL"] for d in shipped if d["kind"] == "Application"}
    if len(urls) != 1:
        problems.append(f"the Applications disagree on repoURL: {sorted(urls)}")

    # A fork edits the one line: everything must follow.
    with tempfile.TemporaryDirectory(prefix="asdo-gitops-") as tmp:
        copy = os.path.join(tmp, "releases")
        shutil.copytree(os.path.join(ROOT, "releases"), copy, ignore=shutil.ignore_patterns("charts", "Chart.lock"))
        with open(os.path.join(copy, "kustomization.yaml")) as f:
            lines = f.read().splitlines()
        lines = [(l.split("repoURL=")[0] + "repoURL=" + FORK_URL) if "repoURL=" in l else
                 (l.split("targetRevision=")[0] + "targetRevision=" + FORK_REV) if "targetRevision=" in l else l
                 for l in lines]
        with open(os.path.join(copy, "kustomization.yaml"), "w") as f:
            f.write("\n".join(lines) + "\n")
        docs = build(args.kubectl, copy)

    tracked = set(subprocess.run(["git", "ls-files", "releases"], cwd=ROOT, capture_output=True,
                                 text=True, check=True).stdout.split())
    apps = [d for d in docs if d.get("kind") == "Application"]
    projects = {d["metadata"]["name"]: d for d in docs if d.get("kind") == "AppProject"}
    others = [d.get("kind") for d in docs if d.get("kind") not in ("Application", "AppProject")]
    if others:
        problems.append(f"kustomize output has unexpected kinds {others} (the source ConfigMap must stay local)")
    envs = sorted(d.split("/")[1][len(CHART) + 1:] for d in tracked
                  if d.startswith(f"releases/{CHART}-") and d.endswith("/Chart.yaml"))
    if sorted(a["metadata"]["name"] for a in apps) != sorted(f"{CHART}-{e}" for e in envs):
        problems.append(f"Applications {[a['metadata']['name'] for a in apps]} do not match releases {envs}")

    kinds_by_env = {}
    for path in args.rendered:
        env = os.path.basename(path)[len("release-"):-len(".yaml")]
        kinds_by_env[env] = {(d["apiVersion"].rsplit("/", 1)[0] if "/" in d["apiVersion"] else "", d["kind"])
                             for d in yaml.safe_load_all(open(path)) if d}

    for p in projects.values():
        if p["spec"].get("sourceRepos") != [FORK_URL]:
            problems.append(f"AppProject {p['metadata']['name']}: sourceRepos {p['spec'].get('sourceRepos')} "
                            f"did not follow the kustomization's repoURL")
        if p["spec"].get("clusterResourceWhitelist") != [{"group": "", "kind": "Namespace"}]:
            problems.append("AppProject: clusterResourceWhitelist must be exactly Namespace (CreateNamespace=true)")

    for a in apps:
        name, spec = a["metadata"]["name"], a["spec"]
        src, dest, sync = spec["source"], spec["destination"], spec.get("syncPolicy", {})
        env = name[len(CHART) + 1:]
        if src.get("repoURL") != FORK_URL or src.get("targetRevision") != FORK_REV:
            problems.append(f"{name}: repoURL/targetRevision {src.get('repoURL')}@{src.get('targetRevision')} "
                            f"did not follow releases/kustomization.yaml")
        if f"{src.get('path')}/Chart.yaml" not in tracked:
            problems.append(f"{name}: source.path {src.get('path')} is not a release tracked in this repository")
        if src.get("path") != f"releases/{name}" or src.get("helm", {}).get("releaseName") != name:
            problems.append(f"{name}: path/releaseName must be releases/{name} and {name}")
        values = yaml.safe_load(open(os.path.join(ROOT, "releases", name, "values.yaml")))
        ns = values[CHART]["namespace"]["name"]
        if dest.get("namespace") != ns:
            problems.append(f"{name}: destination.namespace {dest.get('namespace')} != namespace.name {ns}")
        retry = sync.get("retry") or {}
        if not (retry.get("limit", 0) > 0 and retry.get("backoff", {}).get("duration")):
            problems.append(f"{name}: syncPolicy.retry with a limit and a backoff is missing")
        project = projects.get(spec.get("project"))
        if project is None:
            problems.append(f"{name}: project {spec.get('project')!r} is not the shipped AppProject")
            continue
        if not any(fnmatch.fnmatch(dest.get("namespace", ""), d.get("namespace", "")) and
                   d.get("server") == dest.get("server") for d in project["spec"].get("destinations", [])):
            problems.append(f"{name}: the AppProject does not allow destination {dest}")
        allowed = {(k["group"], k["kind"]) for k in project["spec"].get("namespaceResourceWhitelist", [])}
        for group, kind in sorted(kinds_by_env.get(env, set())):
            if (group, kind) not in allowed and kind != "Namespace":
                problems.append(f"{name}: renders {kind} ({group or 'core'}), which the AppProject does not allow")

    for p in problems:
        print(f"FAIL {p}", file=sys.stderr)
    print(f"gitops: {len(apps)} Applications + {len(projects)} AppProject from kubectl kustomize releases/, "
          f"repoURL from one line; {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
