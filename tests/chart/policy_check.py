#!/usr/bin/env python3
"""Security properties of the rendered releases (run by .ci/chart-checks.sh).

Per environment:
* S1: the release's NetworkPolicy selects the Pod `asdo spawn` creates, also
  when the release is installed under another name than asdo derives (helm
  template <other name>), so no task pod is left unprotected silently;
* S2: with the default values no egress rule reaches the node metadata server
  (169.254.169.254), the cluster's private ranges or loopback, on any port,
  while DNS to kube-dns and TCP 443/22 to a public address are allowed;
  policyTypes has Ingress and Egress and ingress is empty;
* the optional cleanup CronJob runs a command line asdo accepts, as its own
  ServiceAccount, whose Role is exactly list/delete pods and get pods/log;
* S3: every emptyDir of the task Pod (Helm's and asdo's) has a sizeLimit, the
  agent container has ephemeral-storage requests and limits, and the limit
  covers the emptyDirs' sizeLimits.

Usage: policy_check.py --asdo target/debug/asdo --helm .ci/cache/bin/helm
"""
import argparse
import ipaddress
import json
import os
import subprocess
import sys

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHART = "agentic-sdlc-orchestrator"
ENVS = ["dev", "stg", "prod"]
TASK = ["--task-id", "T001", "--branch", "specs/001/T001", "--repo", "git@github.com:org/repo.git"]
FORBIDDEN = ["169.254.169.254", "10.96.0.1", "10.0.0.10", "172.20.0.10", "192.168.1.1", "100.64.0.1",
             "127.0.0.1", "fd00:ec2::254", "fe80::1", "::ffff:169.254.169.254"]
PUBLIC = "140.82.112.3"  # a public address (github.com's range): 443 and 22 must be open to it
KUBE_DNS_POD = {"ns": {"kubernetes.io/metadata.name": "kube-system"}, "pod": {"k8s-app": "kube-dns"}}
UNITS = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}


def run(cmd):
    env = {k: v for k, v in os.environ.items() if k not in ("NAMESPACE", "ENVIRONMENT", "RELEASE_NAME", "KUBECONFIG")}
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{r.stderr}")
    return r.stdout


def selects(selector, labels):
    return all(labels.get(k) == v for k, v in (selector.get("matchLabels") or {}).items()) and \
        not selector.get("matchExpressions")


def peer_allows_ip(peer, ip):
    block = peer.get("ipBlock")
    if block is None:
        return False  # pod/namespace selectors match pods, not arbitrary addresses
    addr = ipaddress.ip_address(ip)
    net = ipaddress.ip_network(block["cidr"], strict=False)
    if addr.version != net.version or addr not in net:
        return False
    return not any(addr in ipaddress.ip_network(e, strict=False) for e in block.get("except", [])
                   if ipaddress.ip_network(e, strict=False).version == addr.version)


def port_open(rule, proto, port):
    ports = rule.get("ports")
    if not ports:
        return True
    return any(p.get("protocol", "TCP") == proto and (p.get("port") in (None, port)) for p in ports)


def rule_reaches_ip(rule, ip, proto=None, port=None):
    to = rule.get("to")
    if proto is not None and not port_open(rule, proto, port):
        return False
    return not to or any(peer_allows_ip(p, ip) for p in to)


def rule_reaches_pod(rule, ns_labels, pod_labels, proto, port):
    if not port_open(rule, proto, port):
        return False
    to = rule.get("to")
    return not to or any(("namespaceSelector" in p or "podSelector" in p) and
                         selects(p.get("namespaceSelector", {}), ns_labels) and
                         selects(p.get("podSelector", {}), pod_labels) for p in to)


def bytes_of(q):
    q = str(q)
    for u, m in UNITS.items():
        if q.endswith(u):
            return float(q[: -len(u)]) * m
    return float(q)


def check_storage(where, pod, problems):
    spec = pod["spec"]
    total = 0
    for v in spec.get("volumes", []):
        if "emptyDir" in v:
            limit = (v["emptyDir"] or {}).get("sizeLimit")
            if not limit:
                problems.append(f"{where}: emptyDir {v['name']} has no sizeLimit")
            else:
                total += bytes_of(limit)
    res = spec["containers"][0].get("resources") or {}
    lim = (res.get("limits") or {}).get("ephemeral-storage")
    req = (res.get("requests") or {}).get("ephemeral-storage")
    if not lim or not req:
        problems.append(f"{where}: container agent has no ephemeral-storage request and limit ({res})")
    elif bytes_of(lim) < total:
        problems.append(f"{where}: ephemeral-storage limit {lim} is below the emptyDirs' sizeLimits ({total / 2**30:.1f}Gi)")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--asdo", required=True)
    ap.add_argument("--helm", required=True)
    args = ap.parse_args()
    asdo, helm = os.path.abspath(args.asdo), os.path.abspath(args.helm)
    problems, checks = [], 0
    for env in ENVS:
        rel = os.path.join("releases", f"{CHART}-{env}")
        cli_pod = json.loads(run([asdo, "spawn", *TASK, "--dry-run", "-o", "json", "-e", env]))
        labels = cli_pod["metadata"]["labels"]
        for release in (f"{CHART}-{env}", "another-name"):
            docs = [d for d in yaml.safe_load_all(run([helm, "template", release, rel])) if d]
            nps = [d for d in docs if d["kind"] == "NetworkPolicy"]
            where = f"{env} (release {release})"
            if len(nps) != 1:
                problems.append(f"{where}: {len(nps)} NetworkPolicies")
                continue
            spec = nps[0]["spec"]
            checks += 1
            if not selects(spec["podSelector"], labels):
                problems.append(f"{where}: the NetworkPolicy selector {spec['podSelector']} does not select "
                                f"asdo's pod (labels {labels})")
            if sorted(spec.get("policyTypes", [])) != ["Egress", "Ingress"] or spec.get("ingress") != []:
                problems.append(f"{where}: policyTypes must be Ingress+Egress with ingress: []")
            egress = spec.get("egress", [])
            for ip in FORBIDDEN:
                if any(rule_reaches_ip(r, ip) for r in egress):
                    problems.append(f"{where}: egress allows {ip}")
            for port in (443, 22):
                if not any(rule_reaches_ip(r, PUBLIC, "TCP", port) for r in egress):
                    problems.append(f"{where}: egress does not allow TCP {port} to a public address")
            for proto in ("UDP", "TCP"):
                if not any(rule_reaches_pod(r, KUBE_DNS_POD["ns"], KUBE_DNS_POD["pod"], proto, 53) for r in egress):
                    problems.append(f"{where}: egress does not allow DNS ({proto} 53) to kube-dns")
        sub = [f"--set-string={CHART}.task.id=T001", f"--set-string={CHART}.task.branch=b",
               f"--set-string={CHART}.task.repo=git@github.com:org/repo.git"]
        helm_pod = [d for d in yaml.safe_load_all(run([helm, "template", f"{CHART}-{env}", rel, *sub]))
                    if d and d["kind"] == "Pod"][0]
        check_storage(f"{env} helm", helm_pod, problems)
        check_storage(f"{env} asdo", cli_pod, problems)
    # The optional cleanup CronJob runs an asdo command line asdo accepts, under a Role
    # with no verb beyond what cleanup --older-than --save-logs calls.
    docs = [d for d in yaml.safe_load_all(run([helm, "template", "demo", os.path.join("charts", CHART),
                                                 "--set", "cleanupJob.enabled=true,cleanupJob.saveLogs.enabled=true"]))
            if d]
    cron = next(d for d in docs if d["kind"] == "CronJob")
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    cmd = pod["containers"][0]["command"]
    r = subprocess.run([asdo, *cmd[1:], "--help"], capture_output=True, text=True)
    if cmd[:2] != ["asdo", "cleanup"] or r.returncode != 0:
        problems.append(f"cleanup CronJob command {cmd} is not one asdo accepts: {r.stderr.strip()}")
    role = next(d for d in docs if d["kind"] == "Role" and d["metadata"]["name"].endswith("-cleanup"))
    granted = {(res, v) for rule in role["rules"] for res in rule["resources"] for v in rule["verbs"]}
    if granted != {("pods", "list"), ("pods", "delete"), ("pods/log", "get")}:
        problems.append(f"cleanup Role grants {sorted(granted)}, not exactly list/delete pods and get pods/log")
    if pod.get("serviceAccountName") != role["metadata"]["name"] or any(
            "emptyDir" in v or "secret" in v for v in pod.get("volumes", [])):
        problems.append("cleanup pod must run as its own ServiceAccount and mount only the archive")
    for p in problems:
        print(f"FAIL {p}", file=sys.stderr)
    print(f"policy: {checks} NetworkPolicies (release name as asdo derives it and another) select asdo's pods, "
          f"deny {len(FORBIDDEN)} internal/metadata addresses, allow DNS and 443/22 out; "
          f"{len(ENVS) * 2} task Pods bound their disk; the cleanup CronJob's command is asdo's and its Role "
          f"least-privilege; {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
