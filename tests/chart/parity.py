#!/usr/bin/env python3
"""Chart <-> CLI parity: the chart's templates/pod.yaml must render the same Pod
as `asdo spawn --dry-run -o json` (src/render.rs) for the same inputs.

For every environment and every variant below, render the Pod twice:
  * helm template <release> releases/<release> -f <values under the subchart key>
  * asdo spawn <flags> --dry-run -o json -e <env>
drop what only one side can know (label helm.sh/chart, label
app.kubernetes.io/managed-by = Helm vs asdo, annotation agentic-sdlc/asdo-version)
and compare as JSON; a difference prints a unified diff.

Also checked: no Pod without task.id, and inputs both sides must refuse (task.id
without repo or branch, a relative contextDir, a repo URL with a password, an
invalid task id, sshSecret without a name; typos inside the security contexts,
seccompProfile, env, extra volumes, tolerations and affinity; names that are not
DNS-1123; an empty store key) make helm fail with the chart's message and asdo
exit 2 (naming the key, for the schema cases).

Runs `helm dependency build` in each release first, so the chart as it is now
is what gets compared (never a stale charts/*.tgz).

Usage: parity.py --asdo target/debug/asdo --helm .ci/cache/bin/helm [--env dev ...]
"""
import argparse
import difflib
import json
import os
import subprocess
import sys
import tempfile

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHART = "agentic-sdlc-orchestrator"
ENVS = ["dev", "stg", "prod"]

BRANCH = "specs/001-auth/T001-async"
REPO = "git@github.com:org/repo.git"
# A prompt that exercises YAML quoting: newlines, quotes, ': ', ' #', unicode,
# template braces, leading/trailing spaces and HTML characters.
NASTY_PROMPT = (
    '  Add login: use "OAuth" # not basic auth\n'
    "- keep it 'simple' & <safe>\n"
    "{{ .Values.not.a.template }} ünïcödé ✓\ttab\n"
)


class Variant:
    """One set of inputs, spelled for asdo (flags) and for Helm (chart values)."""

    def __init__(self, name, asdo_args, values, helm_set_string=None, asdo_values=None):
        self.name = name
        self.asdo_args = asdo_args
        self.values = values  # chart-level keys; wrapped under the subchart key for Helm
        self.helm_set_string = helm_set_string or []
        self.asdo_values = asdo_values  # a chart-keys -f file for asdo, when the variant uses one


VARIANTS = [
    # 1. What spec-kit sends. Helm gets it with --set-string, as the README shows.
    Variant(
        "plain",
        ["--task-id", "T001", "--branch", BRANCH, "--repo", REPO],
        {},
        helm_set_string=[f"task.id=T001", f"task.branch={BRANCH}", f"task.repo={REPO}"],
    ),
    # 2. Prompt, spec dir (a repository-relative --context-dir) and model.
    Variant(
        "prompt-specdir-model",
        ["--task-id", "T002", "--branch", "specs/001-auth/T002-async", "--repo",
         "https://github.com/org/repo.git", "--prompt", NASTY_PROMPT,
         "--context-dir", "specs/001-auth", "--model", "anthropic/claude-sonnet-4",
         "--base", "release/1.2"],
        {"task": {"id": "T002", "branch": "specs/001-auth/T002-async",
                  "repo": "https://github.com/org/repo.git", "prompt": NASTY_PROMPT,
                  "specDir": "specs/001-auth", "model": "anthropic/claude-sonnet-4",
                  "base": "release/1.2"}},
    ),
    # 3. Git credentials from Secrets and a node selector.
    Variant(
        "ssh-token-nodeselector",
        ["--task-id", "t-003", "--branch", BRANCH, "--repo", REPO, "--ssh-secret", "git-ssh",
         "--set", "pod.gitTokenSecret.enabled=true", "--set", "pod.gitTokenSecret.name=gh",
         "--set", "pod.nodeSelector.pool=agents", "--pr", "--set", "agent.forge.type=gitlab",
         "--set", "agent.forge.apiUrl=https://git.example.com/api/v4",
         "--set", "agent.forge.project=g/sub/p"],
        {"task": {"id": "t-003", "branch": BRANCH, "repo": REPO},
         "agent": {"pullRequest": True, "forge": {"type": "gitlab", "apiUrl": "https://git.example.com/api/v4",
                                                  "project": "g/sub/p"}},
         "pod": {"sshSecret": {"enabled": True, "name": "git-ssh"},
                 "gitTokenSecret": {"enabled": True, "name": "gh"},
                 "nodeSelector": {"pool": "agents"}}},
    ),
    # 4. Every pass-through value at once, through a values file on both sides:
    # a numeric-looking id, a context dir below /workspace, numeric quantities,
    # extra labels/annotations/env/volumes, scheduling, pull secrets, command/args.
    Variant(
        "values-file-everything",
        ["--task-id", "1234", "--branch", "feature/x", "--repo", "ssh://git@git.example.com:2222/org/repo.git",
         "--context-dir", "/workspace/sub"],
        {"task": {"id": "1234", "branch": "feature/x", "repo": "ssh://git@git.example.com:2222/org/repo.git",
                  "contextDir": "/workspace/sub"}},
        asdo_values={
            "pod": {
                "image": {"tag": "9.9.9", "pullPolicy": "Always"},
                "imagePullSecrets": [{"name": "registry"}],
                "command": ["sh", "-c"], "args": ["echo hi; exec asdo agent"],
                "activeDeadlineSeconds": 3600, "terminationGracePeriodSeconds": 0,
                "resources": {"limits": {"cpu": 3, "memory": "6Gi", "ephemeral-storage": "20Gi"},
                              "requests": {"cpu": 0.5, "memory": "1Gi"}},
                "tolerations": [{"key": "agents", "operator": "Exists", "effect": "NoSchedule"}],
                "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [{"matchExpressions": [
                        {"key": "pool", "operator": "In", "values": ["agents"]}]}]}}},
                "labels": {"team": "ai", "app": "must-not-win"},
                "annotations": {"example.com/owner": "platform", "agentic-sdlc/branch": "must-not-win"},
                "env": [{"name": "EXTRA", "value": "1"},
                        {"name": "FROM_CM", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "k"}}}],
                "extraVolumes": [{"name": "cache", "emptyDir": {"sizeLimit": "1Gi"}}],
                "extraVolumeMounts": [{"name": "cache", "mountPath": "/cache"}],
                "workspace": {"sizeLimit": "20Gi"},
            },
            "task": {"gitAuthorName": "Bot", "gitAuthorEmail": "bot@example.com"},
        },
    ),
    # 5. Keys deleted with null (Helm and asdo drop them) and empty values: what
    # each renderer omits must be the same.
    Variant(
        "nulls-and-empties",
        ["--task-id", "T005", "--branch", BRANCH, "--repo", REPO],
        {"task": {"id": "T005", "branch": BRANCH, "repo": REPO}},
        asdo_values={
            "pod": {
                "activeDeadlineSeconds": None, "terminationGracePeriodSeconds": None,
                "securityContext": None, "containerSecurityContext": None, "resources": None,
                "affinity": None, "workspace": {"sizeLimit": None},
                "image": {"pullPolicy": ""}, "command": [], "args": [],
            },
            "task": {"model": "", "prompt": "", "specDir": ""},
        },
    ),
]

VARIANTS += [
    # 6. Sandboxed runtime, priority, bounded scratch and ephemeral storage (S3, S4),
    # and Kubernetes objects deep enough that a dropped key would show.
    Variant(
        "runtime-priority-storage-deep-objects",
        ["--task-id", "T006", "--branch", BRANCH, "--repo", REPO],
        {"task": {"id": "T006", "branch": BRANCH, "repo": REPO}},
        asdo_values={
            "pod": {
                "runtimeClassName": "gvisor", "priorityClassName": "agents-low",
                "home": {"sizeLimit": "2Gi"}, "tmp": {"sizeLimit": "512Mi"},
                "resources": {"limits": {"ephemeral-storage": "15Gi"}, "requests": {"ephemeral-storage": "3Gi"}},
                "securityContext": {"appArmorProfile": {"type": "RuntimeDefault"},
                                    "seLinuxOptions": {"level": "s0:c123,c456"},
                                    "fsGroupChangePolicy": "OnRootMismatch"},
                "containerSecurityContext": {"seccompProfile": {"type": "RuntimeDefault"}, "procMount": "Default"},
                "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                        {"name": "ANTHROPIC_API_KEY", "valueFrom": {"secretKeyRef": {
                            "name": "agentic-sdlc-orchestrator-dev-server-password", "key": "anthropic-api-key"}}}],
                "extraVolumes": [{"name": "token", "projected": {"sources": [
                    {"serviceAccountToken": {"audience": "git", "expirationSeconds": 600, "path": "t"}}]}}],
                "extraVolumeMounts": [{"name": "token", "mountPath": "/var/run/git", "readOnly": True,
                                       "mountPropagation": "None"}],
                "tolerations": [{"key": "sandbox", "operator": "Equal", "value": "gvisor", "effect": "NoSchedule"}],
                "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{
                    "weight": 10, "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname",
                                                      "labelSelector": {"matchLabels": {"app": "agent-orchestrator"}}}}]}},
            },
        },
    ),
    # 7. The new scratch limits deleted with null: both omit them.
    Variant(
        "scratch-limits-null",
        ["--task-id", "T007", "--branch", BRANCH, "--repo", REPO],
        {"task": {"id": "T007", "branch": BRANCH, "repo": REPO}},
        asdo_values={"pod": {"home": {"sizeLimit": None}, "tmp": {"sizeLimit": None},
                             "runtimeClassName": "", "priorityClassName": ""}},
    ),
    # 8. Queued on Kueue: pod.queueName is the kueue.x-k8s.io/queue-name label, and it
    # wins over a pod.labels entry of the same key.
    Variant(
        "kueue-queue-name",
        ["--task-id", "T008", "--branch", BRANCH, "--repo", REPO],
        {"task": {"id": "T008", "branch": BRANCH, "repo": REPO}},
        asdo_values={"pod": {"queueName": "agents", "labels": {"kueue.x-k8s.io/queue-name": "must-not-win"}}},
    ),
]

# Inputs both renderers must refuse: (name, chart values, asdo args, text helm's error must contain).
REFUSED = [
    ("id without repo", {"task": {"id": "T001", "branch": BRANCH}},
     ["--task-id", "T001", "--branch", BRANCH], "task.repo is required when task.id is set"),
    ("id without branch", {"task": {"id": "T001", "repo": REPO}},
     ["--task-id", "T001", "--repo", REPO], "task.branch is required when task.id is set"),
    ("invalid id", {"task": {"id": "T_001", "branch": BRANCH, "repo": REPO}},
     ["--task-id", "T_001", "--branch", BRANCH, "--repo", REPO], "/task/id"),
    ("password in repo URL", {"task": {"id": "T001", "branch": BRANCH, "repo": "https://u:secret@github.com/o/r.git"}},
     ["--task-id", "T001", "--branch", BRANCH, "--repo", "https://u:secret@github.com/o/r.git"],
     "task.repo contains a password or token"),
    ("relative contextDir", {"task": {"id": "T001", "branch": BRANCH, "repo": REPO, "contextDir": "work"}},
     ["--task-id", "T001", "--branch", BRANCH, "--repo", REPO, "--set", "task.contextDir=work"], "task/contextDir"),
    ("pull request without a token", {"task": {"id": "T001", "branch": BRANCH, "repo": REPO},
                                      "agent": {"pullRequest": True}},
     ["--task-id", "T001", "--branch", BRANCH, "--repo", REPO, "--pr"],
     "agent.pullRequest (--pr) needs a forge token"),
    ("sshSecret without name", {"task": {"id": "T001", "branch": BRANCH, "repo": REPO},
                                "pod": {"sshSecret": {"enabled": True}}},
     ["--task-id", "T001", "--branch", BRANCH, "--repo", REPO, "--set", "pod.sshSecret.enabled=true"],
     "pod.sshSecret.enabled needs a Secret name"),
]
# Typos and bad names inside the objects the chart passes through (H3/H4): the schema
# refuses them for Helm, and asdo must refuse them too instead of dropping them.
_T = ["--task-id", "T001", "--branch", BRANCH, "--repo", REPO]
_TV = {"id": "T001", "branch": BRANCH, "repo": REPO}
for _name, _pod, _sets, _msg in [
    ("securityContext typo", {"securityContext": {"runAsNonroot": True}},
     ["pod.securityContext.runAsNonroot=true"], "runAsNonroot"),
    ("containerSecurityContext typo", {"containerSecurityContext": {"readOnlyRootFileSystem": True}},
     ["pod.containerSecurityContext.readOnlyRootFileSystem=true"], "readOnlyRootFileSystem"),
    ("seccompProfile typo", {"securityContext": {"seccompProfile": {"typ": "RuntimeDefault"}}},
     ["pod.securityContext.seccompProfile.typ=RuntimeDefault"], "typ"),
    ("env valuefrom typo", {"env": [{"name": "A", "valuefrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]},
     ["pod.env[0].name=A", "pod.env[0].valuefrom.secretKeyRef.name=s"], "valuefrom"),
    ("extraVolumes emptydir typo", {"extraVolumes": [{"name": "v", "emptydir": {}}]},
     ["pod.extraVolumes[0].name=v", "pod.extraVolumes[0].emptydir.medium=Memory"], "emptydir"),
    ("toleration operator", {"tolerations": [{"key": "a", "operator": "exists"}]},
     ["pod.tolerations[0].key=a", "pod.tolerations[0].operator=exists"], "operator"),
    ("affinity typo", {"affinity": {"nodeaffinity": {}}}, ["pod.affinity.nodeaffinity.x=1"], "nodeaffinity"),
    ("runtimeClassName not DNS", {"runtimeClassName": "gVisor"}, ["pod.runtimeClassName=gVisor"], "runtimeClassName"),
    ("priorityClassName not DNS", {"priorityClassName": "High_Prio"}, ["pod.priorityClassName=High_Prio"],
     "priorityClassName"),
    ("queueName not DNS", {"queueName": "Team_A"}, ["pod.queueName=Team_A"], "queueName"),
]:
    # asdo reads the same values file Helm gets (a release-shaped file is accepted).
    REFUSED.append((_name, {"task": _TV, "pod": _pod}, _T + ["-f", "@VALUES"], _msg, _msg))
for _name, _values, _sets, _msg in [
    ("serviceAccount.name not DNS", {"serviceAccount": {"name": "My_SA"}}, ["serviceAccount.name=My_SA"],
     "serviceAccount/name"),
    ("empty remoteRef.key", {"externalSecret": {"remoteRef": {"key": ""}}}, ["externalSecret.remoteRef.key="],
     "remoteRef/key"),
]:
    REFUSED.append((_name, {"task": _TV, **_values}, _T + [a for s in _sets for a in ("--set", s)], _msg,
                    _msg.replace("/", ".")))


def clean_env():
    env = dict(os.environ)
    # asdo reads these (kubectl style); the CI environment must not steer the comparison.
    for k in ("NAMESPACE", "ENVIRONMENT", "RELEASE_NAME", "SSH_SECRET_NAME", "KUBECONFIG", "RUST_LOG"):
        env.pop(k, None)
    return env


def run(cmd):
    return subprocess.run(cmd, cwd=ROOT, env=clean_env(), capture_output=True, text=True)


def write_values(tmp, name, chart_values):
    path = os.path.join(tmp, name)
    with open(path, "w") as f:
        json.dump({CHART: chart_values}, f)  # JSON is YAML; no quoting surprises
    return path


def helm_template(helm, env, values_file, set_string=()):
    cmd = [helm, "template", f"{CHART}-{env}", os.path.join("releases", f"{CHART}-{env}")]
    if values_file:
        cmd += ["-f", values_file]
    for s in set_string:
        cmd += ["--set-string", f"{CHART}.{s}"]
    return run(cmd)


def pods_of(manifest):
    return [d for d in yaml.safe_load_all(manifest) if d and d.get("kind") == "Pod"]


def normalise(pod):
    pod = json.loads(json.dumps(pod))
    meta = pod.get("metadata", {})
    for k in ("helm.sh/chart", "app.kubernetes.io/managed-by"):
        meta.get("labels", {}).pop(k, None)
    meta.get("annotations", {}).pop("agentic-sdlc/asdo-version", None)
    return pod


def dump(obj):
    return json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False).splitlines(keepends=True)


def deep_merge(a, b):
    out = dict(a)
    for k, v in b.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--asdo", required=True, help="path to the asdo binary")
    ap.add_argument("--helm", required=True, help="path to the helm binary")
    ap.add_argument("--env", action="append", help="environment(s) to check (default: all)")
    args = ap.parse_args()
    asdo = os.path.abspath(args.asdo)
    helm = os.path.abspath(args.helm)
    envs = args.env or ENVS
    failures = []
    identical = refused_ok = no_pod_ok = 0

    with tempfile.TemporaryDirectory(prefix="asdo-parity-") as tmp:
        for env in envs:
            dep = os.path.join(ROOT, "releases", f"{CHART}-{env}", "charts")
            # Package the chart as it is now: a stale charts/*.tgz would compare an old template.
            b = run([helm, "dependency", "build", os.path.relpath(os.path.dirname(dep), ROOT)])
            if b.returncode != 0:
                sys.exit(f"helm dependency build releases/{CHART}-{env} failed:\n{b.stderr}")

            # No task.id: the release renders no Pod.
            r = helm_template(helm, env, None)
            if r.returncode != 0:
                failures.append(f"{env}: helm template without a task failed:\n{r.stderr}")
            elif pods_of(r.stdout):
                failures.append(f"{env}: helm template without task.id rendered a Pod")
            else:
                no_pod_ok += 1

            for v in VARIANTS:
                label = f"{env}/{v.name}"
                chart_values = deep_merge(v.values, v.asdo_values or {})
                vf = write_values(tmp, f"{env}-{v.name}.json", chart_values) if chart_values else None
                h = helm_template(helm, env, vf, v.helm_set_string)
                asdo_cmd = [asdo, "spawn", *v.asdo_args, "--dry-run", "-o", "json", "-e", env]
                if v.asdo_values:
                    af = os.path.join(tmp, f"{env}-{v.name}-asdo.yaml")
                    with open(af, "w") as f:
                        yaml.safe_dump(v.asdo_values, f)
                    asdo_cmd += ["-f", af]
                a = run(asdo_cmd)
                if h.returncode != 0 or a.returncode != 0:
                    failures.append(f"{label}: render failed\n helm ({h.returncode}): {h.stderr.strip()}\n"
                                    f" asdo ({a.returncode}): {a.stderr.strip()}")
                    continue
                hp = pods_of(h.stdout)
                if len(hp) != 1:
                    failures.append(f"{label}: helm rendered {len(hp)} Pods, expected 1")
                    continue
                chart_pod, cli_pod = normalise(hp[0]), normalise(json.loads(a.stdout))
                if chart_pod == cli_pod:
                    identical += 1
                else:
                    diff = "".join(difflib.unified_diff(dump(cli_pod), dump(chart_pod),
                                                        "asdo spawn --dry-run -o json", "helm template (pod.yaml)"))
                    failures.append(f"{label}: the chart's Pod differs from asdo's:\n{diff}")

            for name, values, asdo_args, message, *asdo_message in REFUSED:
                label = f"{env}/refuse {name}"
                vf = write_values(tmp, f"{env}-refuse.json", values)
                h = helm_template(helm, env, vf)
                asdo_args = [vf if x == "@VALUES" else x for x in asdo_args]
                a = run([asdo, "spawn", *asdo_args, "--dry-run", "-o", "json", "-e", env])
                before = len(failures)
                if h.returncode == 0:
                    failures.append(f"{label}: helm template succeeded, expected an error containing {message!r}")
                elif message not in h.stderr:
                    failures.append(f"{label}: helm failed without {message!r}:\n{h.stderr.strip()}")
                if a.returncode == 0:
                    failures.append(f"{label}: asdo spawn --dry-run accepted it")
                elif a.returncode != 2 or (asdo_message and asdo_message[0] not in a.stderr):
                    failures.append(f"{label}: asdo refused it ({a.returncode}) without naming "
                                    f"{asdo_message[0] if asdo_message else 'it'}: {a.stderr.strip()}")
                refused_ok += len(failures) == before

    for f in failures:
        print(f"FAIL {f}", file=sys.stderr)
    print(f"parity: {identical}/{len(envs) * len(VARIANTS)} Pods identical ({len(envs)} environments x "
          f"{len(VARIANTS)} variants), {refused_ok}/{len(envs) * len(REFUSED)} refusals, "
          f"{no_pod_ok}/{len(envs)} no-task renders without a Pod; {len(failures)} problem(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
