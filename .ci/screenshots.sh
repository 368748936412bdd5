#!/usr/bin/env bash
# Screenshots of `asdo ui` (tasks view, task view, delete confirmation) into docs/images,
# made by the browser test from the fake API server, so the README's pictures stay true.
set -euo pipefail
cd "$(dirname "$0")/.."
bash .ci/py-tools.sh
mkdir -p docs/images
ASDO_SCREENSHOTS="$PWD/docs/images" cargo test --test e2e ui::ui_in_a_real_browser -- --exact
ls -l docs/images
