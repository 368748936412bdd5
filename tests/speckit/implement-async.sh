#!/usr/bin/env bash
# A stand-in for what spec-kit's scripts/bash/implement.sh (tikalk/agentic-sdlc-spec-kit
# 4dac8320 .. baea750e) does with [ASYNC] tasks routed to the orchestrator, reduced to
# what asdo sees: under `set -euo pipefail`, run from the repository root, it finds
# scripts/spawn-pod.sh the way implement.sh does, calls it once per task with the same
# flags, and stops at the first non-zero exit. Written for asdo's tests; not spec-kit code.
#
#   implement-async.sh FEATURE_DIR TASK_ID...
set -euo pipefail

feature_dir=$1
shift
repo_url=$(git remote get-url origin || echo "")

orchestrator_script=""
for candidate in "$feature_dir/scripts/spawn-pod.sh" "./scripts/spawn-pod.sh"; do
    if [[ -x "$candidate" ]]; then
        orchestrator_script=$candidate
        break
    fi
done
if [[ -z "$orchestrator_script" ]]; then
    echo "no scripts/spawn-pod.sh" >&2
    exit 3
fi

for task_id in "$@"; do
    branch="specs/$(basename "$feature_dir")/${task_id}-async"
    "$orchestrator_script" --task-id "$task_id" --branch "$branch" --repo "$repo_url" --context-dir "$feature_dir"
    echo "K8s pod spawned for task $task_id"
done
