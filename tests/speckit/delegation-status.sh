#!/usr/bin/env bash
# The answer spec-kit's check_delegation_status gives for one task, from the same files
# in the same order (written for asdo's tests; not spec-kit code):
#   no <dir>/delegation_prompts/<id>.md      -> no_job
#   <dir>/delegation_completed/<id>.txt      -> completed
#   <dir>/delegation_errors/<id>.txt         -> failed
#   otherwise                                -> running
# <dir> is the repository root (spec-kit up to d50d5635, run from there) or
# <feature>/.async_state (from d50d5635 on).
#
#   delegation-status.sh DIR TASK_ID
set -euo pipefail
dir=$1 id=$2
if [[ ! -f "$dir/delegation_prompts/$id.md" ]]; then
    echo no_job
elif [[ -f "$dir/delegation_completed/$id.txt" ]]; then
    echo completed
elif [[ -f "$dir/delegation_errors/$id.txt" ]]; then
    echo failed
else
    echo running
fi
