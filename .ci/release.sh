#!/usr/bin/env bash
# Release helper. The procedure (README "Release"):
#
#   .ci/release.sh bump 0.2.0      # every version in the repo, together; then checks them
#   git commit -am 'release 0.2.0' && git tag v0.2.0 && git push origin main v0.2.0
#                                  # .github/workflows/release.yml does the rest
#
# The release workflow also calls:
#   .ci/release.sh dist <rust-target> <out-dir>   build asdo for a target, package it
#                                                  as asdo-<version>-<target>.tar.gz + .sha256
#   .ci/release.sh krew <version> <SHA256SUMS>     print the krew manifest for that release
#                                                  (from .github/krew/asdo.yaml)
set -euo pipefail
CALLER_DIR=$PWD
cd "$(dirname "$0")/.."
# Paths given on the command line are relative to where the script was called from.
from_caller() { [[ "$1" == /* ]] && echo "$1" || echo "$CALLER_DIR/$1"; }

CHART_NAME=agentic-sdlc-orchestrator
die() { echo "release.sh: $*" >&2; exit 2; }
crate_version() { sed -n -E '/^\[package\]/,/^\[/ s/^version[[:space:]]*=[[:space:]]*"([^"]+)".*/\1/p' Cargo.toml | head -1; }

# sed -i that works with GNU and BSD sed.
sub() {
    local expr=$1
    shift
    local f
    for f in "$@"; do
        sed -E "$expr" "$f" >"$f.tmp" && mv "$f.tmp" "$f"
    done
}

bump() {
    local new=${1:-}
    [[ "$new" =~ ^[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$ ]] || die "bump needs a semver version like 0.2.0 (got '${new}')"
    local old
    old=$(crate_version)
    [[ "$new" != "$old" ]] || die "already at $new"
    # Regex-quote the old version's dots.
    local o=${old//./\\.}
    sub "/^\[package\]/,/^\[/ s/^version = \"$o\"/version = \"$new\"/" Cargo.toml
    # The root package's entry in the lock file (the line after its name).
    awk -v old="$old" -v new="$new" '
        prev == "name = \"asdo\"" && $0 == "version = \"" old "\"" { $0 = "version = \"" new "\"" }
        { print; prev = $0 }' Cargo.lock >Cargo.lock.tmp && mv Cargo.lock.tmp Cargo.lock
    sub "s/^(pub const APP_VERSION: &str = \")$o(\";)/\1$new\2/" src/values.rs
    sub "s/^version: $o\$/version: $new/; s/^appVersion: \"$o\"\$/appVersion: \"$new\"/" \
        "charts/$CHART_NAME/Chart.yaml" releases/"$CHART_NAME"-*/Chart.yaml
    # The dependency on the chart inside each release.
    sub "s/^([[:space:]]+version:[[:space:]]*)$o\$/\1$new/" releases/"$CHART_NAME"-*/Chart.yaml
    # pod.image.tag keeps its per-environment suffix (0.1.0-dev -> 0.2.0-dev).
    sub "s/^([[:space:]]+tag:[[:space:]]*\")$o(-[A-Za-z0-9.]+)?\"/\1$new\2\"/" releases/"$CHART_NAME"-*/values.yaml
    sub "s/(org\.opencontainers\.image\.version=\")$o\"/\1$new\"/; s/(agentic-sdlc\/opencode:)$o\b/\1$new/g" \
        docker/Dockerfile.opencode
    # Image references in docs, tests and benches, and the versions the chart README quotes.
    local files
    mapfile -t files < <(git grep -l -E "agentic-sdlc/opencode:$o|\`$o(-dev|-stg)?\`" -- '*.md' '*.rs' 2>/dev/null || true)
    ((${#files[@]} == 0)) || sub "s/(agentic-sdlc\/opencode:)$o/\1$new/g; s/\`$o(-dev|-stg)?\`/\`$new\1\`/g" "${files[@]}"
    bash .ci/check-versions.sh
    echo
    echo "bumped $old -> $new. Next:"
    echo "  cargo check --locked && git diff --stat"
    echo "  git commit -am 'release $new' && git tag -a v$new -m 'asdo $new' && git push origin HEAD v$new"
}

dist() {
    local target=${1:?dist needs a rust target, e.g. x86_64-unknown-linux-musl}
    local out
    out=$(from_caller "${2:-dist}")
    local version
    version=$(crate_version)
    case "$target" in
    # musl: a static binary (Rust links musl's libc statically by default); the C
    # parts (ring) are compiled with musl-gcc from the musl-tools package.
    *-linux-musl)
        command -v musl-gcc >/dev/null || die "musl-gcc not found: apt-get install musl-tools"
        export "CC_${target//-/_}=musl-gcc"
        ;;
    *-apple-darwin) export MACOSX_DEPLOYMENT_TARGET=${MACOSX_DEPLOYMENT_TARGET:-11.0} ;;
    *) die "unsupported target $target" ;;
    esac
    cargo build --release --locked --bin asdo --target "$target"
    local name=asdo-$version-$target
    local stage
    stage=$(mktemp -d)
    mkdir -p "$stage/$name" "$out"
    install -m 0755 "target/$target/release/asdo" "$stage/$name/asdo"
    cp README.md "$stage/$name/"
    if [[ "$target" == *-linux-musl ]] && command -v file >/dev/null; then
        file "$stage/$name/asdo" | grep -q 'statically linked\|static-pie linked' ||
            die "$target binary is not statically linked: $(file "$stage/$name/asdo")"
    fi
    tar -C "$stage" -czf "$out/$name.tar.gz" "$name"
    (cd "$out" && { sha256sum "$name.tar.gz" 2>/dev/null || shasum -a 256 "$name.tar.gz"; } >"$name.tar.gz.sha256")
    rm -rf "$stage"
    cat "$out/$name.tar.gz.sha256"
}

krew() {
    local version=${1:?krew needs a version} sums
    sums=$(from_caller "${2:?krew needs the SHA256SUMS file}")
    [[ -f "$sums" ]] || die "$sums: no such file"
    local text
    # The header comment documents the template; the manifest starts after it.
    text=$(sed -e "/^#/d" -e "s/{{VERSION}}/$version/g" .github/krew/asdo.yaml)
    local target sha
    for target in x86_64-unknown-linux-musl aarch64-unknown-linux-musl x86_64-apple-darwin aarch64-apple-darwin; do
        sha=$(awk -v f="asdo-$version-$target.tar.gz" '$2 == f || $2 == "*" f { print $1 }' "$sums")
        [[ "$sha" =~ ^[0-9a-f]{64}$ ]] || die "$sums has no sha256 for asdo-$version-$target.tar.gz"
        text=${text//"{{SHA256:$target}}"/$sha}
    done
    if grep -q '{{' <<<"$text"; then die ".github/krew/asdo.yaml has a placeholder this script does not fill"; fi
    printf '%s\n' "$text"
}

cmd=${1:-}
shift || true
case "$cmd" in
bump) bump "$@" ;;
dist) dist "$@" ;;
krew) krew "$@" ;;
*) die "usage: $0 bump <version> | dist <rust-target> [out-dir] | krew <version> <SHA256SUMS>" ;;
esac
