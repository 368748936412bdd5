#!/usr/bin/env bash
# Python clients the Rust tests drive (installed by package name, pinned, into
# .ci/cache/py-tests; reused when already there):
#   mcp         the official MCP Python SDK: a client of `asdo mcp` no one here wrote
#   websockets  an independent WebSocket client of the fake API server's pods/portforward
#   selenium    drives Debian's chromium (chromedriver) for `asdo ui`'s browser test
#   jsonschema  checks the task objects of `-o json` against src/task.schema.json
# The tests find the interpreter at .ci/cache/py-tests/bin/python (or $ASDO_TEST_PYTHON).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.ci/cache/py-tests
PACKAGES=(mcp==2.3.0 websockets==17.4 selenium==4.27.1 jsonschema==4.26.0)
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
if ! "$VENV/bin/python" -c 'import mcp, websockets, selenium, jsonschema' 2>/dev/null; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q "${PACKAGES[@]}"
fi
"$VENV/bin/python" -c 'import importlib.metadata as m; print("py-tests:", *(f"{p}=={m.version(p)}" for p in ("mcp", "websockets", "selenium", "jsonschema")))'
