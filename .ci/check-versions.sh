#!/usr/bin/env bash
# Version drift check (run by .ci/run and by the release workflow).
#
# One version, the crate's (Cargo.toml [package] version), must appear everywhere
# a release is identified:
#   Cargo.lock (the asdo package), src/values.rs APP_VERSION (the image tag asdo
#   renders when the chart leaves pod.image.tag empty), the chart's Chart.yaml
#   version and appVersion, each release's Chart.yaml version, appVersion and
#   dependency version, each release's pod.image.tag (<version> or
#   <version>-<suffix>, optionally @sha256:<digest>), the Dockerfile's image
#   version label, and every `agentic-sdlc/opencode:<x.y.z>` reference in the
#   Markdown docs (test data elsewhere may use any version).
#
#   .ci/check-versions.sh               check that they agree
#   .ci/check-versions.sh --tag v1.2.3  ... and that they equal the tag (release workflow)
#
# `.ci/release.sh bump <version>` changes them all together.
set -euo pipefail
cd "$(dirname "$0")/.."

tag=""
case "${1:-}" in
--tag) tag=${2:?--tag needs a value like v1.2.3} ;;
"") ;;
*) echo "usage: $0 [--tag vX.Y.Z]" >&2; exit 2 ;;
esac

CHART_NAME=agentic-sdlc-orchestrator
bad=0
checked=0
fail() { echo "version drift: $*" >&2; bad=1; }
# expect FILE WHAT FOUND: FOUND must equal $V.
expect() {
    checked=$((checked + 1))
    [[ "$3" == "$V" ]] || fail "$1: $2 is '${3:-<missing>}', want '$V' (Cargo.toml)"
}
# First `key: value` at column 0 of a YAML file, quotes stripped.
top_key() { sed -n -E "s/^$2:[[:space:]]*\"?([^\"#[:space:]]*)\"?.*/\1/p" "$1" | head -1; }

V=$(sed -n -E '/^\[package\]/,/^\[/ s/^version[[:space:]]*=[[:space:]]*"([^"]+)".*/\1/p' Cargo.toml | head -1)
[[ "$V" =~ ^[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$ ]] || { echo "Cargo.toml: [package] version '$V' is not semver" >&2; exit 1; }

if [[ -n "$tag" && "$tag" != "v$V" ]]; then
    fail "tag $tag does not match Cargo.toml version $V (want tag v$V; bump with .ci/release.sh bump ${tag#v})"
fi

expect Cargo.lock 'package "asdo" version' \
    "$(awk '/^name = "asdo"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)"
expect src/values.rs APP_VERSION \
    "$(sed -n -E 's/^pub const APP_VERSION: &str = "([^"]+)";.*/\1/p' src/values.rs)"

chart=charts/$CHART_NAME/Chart.yaml
expect "$chart" version "$(top_key "$chart" version)"
expect "$chart" appVersion "$(top_key "$chart" appVersion)"

for rel in releases/"$CHART_NAME"-*/; do
    rel=${rel%/}
    expect "$rel/Chart.yaml" version "$(top_key "$rel/Chart.yaml" version)"
    expect "$rel/Chart.yaml" appVersion "$(top_key "$rel/Chart.yaml" appVersion)"
    expect "$rel/Chart.yaml" "dependency $CHART_NAME version" \
        "$(awk -v n="$CHART_NAME" '$0 ~ "- name: " n "$" { getline; gsub(/^[[:space:]]*version:[[:space:]]*|"/, ""); print; exit }' "$rel/Chart.yaml")"
    # pod.image.tag: the only `tag:` line under `image:` in a release's values.
    t=$(awk '/^[[:space:]]+image:[[:space:]]*$/ { img = 1; next } img && /^[[:space:]]+tag:/ { gsub(/^[[:space:]]*tag:[[:space:]]*|"/, ""); print; exit }' "$rel/values.yaml")
    checked=$((checked + 1))
    if [[ -n "$t" ]]; then
        base=${t%%@*}
        [[ "$base" == "$V" || "$base" == "$V"-* ]] ||
            fail "$rel/values.yaml: pod.image.tag is '$t', want '$V' or '$V-<suffix>'"
    fi
done

expect docker/Dockerfile.opencode 'LABEL org.opencontainers.image.version' \
    "$(sed -n -E 's/.*org\.opencontainers\.image\.version="([^"]+)".*/\1/p' docker/Dockerfile.opencode)"

# Image references in the docs' examples: `agentic-sdlc/opencode:<x.y.z>`.
while IFS=: read -r file line ref; do
    checked=$((checked + 1))
    v=${ref#agentic-sdlc/opencode:}
    v=${v%%-dev}; v=${v%%-stg}; v=${v%%-oc*}
    [[ "$v" == "$V" ]] || fail "$file:$line: $ref (want agentic-sdlc/opencode:$V…)"
done < <(git grep -n -o -E 'agentic-sdlc/opencode:[0-9]+\.[0-9]+\.[0-9]+[0-9A-Za-z.-]*' -- \
    '*.md' 2>/dev/null || true)

if [[ $bad -ne 0 ]]; then
    echo "fix: .ci/release.sh bump <version> changes every one of these together" >&2
    exit 1
fi
echo "versions agree: $V in $checked places${tag:+ (tag $tag)}"
