#!/usr/bin/env bash
# Build h2spec from the copy in /work/shared/conformance/h2spec/src, adding the
# command-line entry point that copy lacks.
#
# Why: /work/shared/conformance/h2spec/setup.sh builds ./cmd/h2spec, but the
# copy has no cmd/ directory -- upstream's own .gitignore has a line "h2spec"
# (meant for the built binary), which also matches the directory cmd/h2spec/,
# so the copy made through git left it out. setup.sh then fails with
#   cannot find package "github.com/summerwind/h2spec/cmd/h2spec"
# This script does what setup.sh does (GOPATH mode, Debian's packaged Go
# libraries, no network) with main.go from this directory as cmd/h2spec.
# Needs the Debian packages setup.sh installs (golang-go, golang-golang-x-net-dev,
# golang-github-spf13-cobra-dev, ...); run setup.sh once for them if missing.
#
# Output: $H2SPEC_BIN (default ${TMPDIR:-/tmp}/h2spec-build/h2spec).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
SRC=${H2SPEC_SRC:-/work/shared/conformance/h2spec/src}
OUT=${H2SPEC_BIN:-${TMPDIR:-/tmp}/h2spec-build/h2spec}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
PKG="$WORK/src/github.com/summerwind/h2spec"
mkdir -p "$(dirname "$PKG")" "$(dirname "$OUT")"
cp -r "$SRC" "$PKG"
chmod -R u+w "$WORK"
mkdir -p "$PKG/cmd/h2spec"
cp "$HERE/main.go" "$PKG/cmd/h2spec/main.go"
cd "$PKG"
GOPATH="$WORK:/usr/share/gocode" GO111MODULE=off GOFLAGS= GOCACHE="$WORK/cache" go build -o "$OUT" ./cmd/h2spec
echo "built $OUT"
