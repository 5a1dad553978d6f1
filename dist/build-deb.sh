#!/bin/sh
# Builds the hagate Debian package: dist/build-deb.sh [OUTDIR] (default bin).
# A static binary (CGO_ENABLED=0) stamped with `git describe`, its man pages
# and completions, packaged by nfpm (pinned in tools/nfpm/go.mod).
set -eu
cd "$(dirname "$0")/.."
OUT=${1:-bin}
GO=${GO:-go}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT

# hagate version: the tag, or the commit when there is none; -dirty marks a
# build with uncommitted changes.
DESCRIBE=$(git describe --tags --always --dirty 2>/dev/null || echo dev)
# Debian version: v1.2.3-4-gabc -> 1.2.3+4.gabc; a bare commit sorts below
# any release: 0~git.<commit>.
case "$DESCRIBE" in
	v[0-9]*|[0-9]*) VERSION=$(echo "$DESCRIBE" | sed -e 's/^v//' -e 's/-\([0-9]*\)-g/+\1.g/' -e 's/-dirty$/.dirty/') ;;
	*) VERSION="0~git.$(echo "$DESCRIBE" | sed -e 's/-dirty$/.dirty/')" ;;
esac
ARCH=$($GO env GOARCH)

CGO_ENABLED=0 $GO build -trimpath \
	-ldflags "-s -w -X github.com/hagate/hagate/internal/version.Version=$DESCRIBE" \
	-o "$STAGE/hagate" ./cmd/hagate
$GO run ./cmd/hagate-docs -out "$STAGE"
gzip -9n "$STAGE"/man/*.1

# nfpm is built once, next to the hagate binary of `make build`.
NFPM="$(pwd)/bin/nfpm-v2.48.0"
if [ ! -x "$NFPM" ]; then
	mkdir -p bin
	$GO build -C tools/nfpm -o "$NFPM" github.com/goreleaser/nfpm/v2/cmd/nfpm
fi
# nfpm reads paths as written: the staging directory, version and
# architecture are filled in here.
sed -e "s|\${STAGE}|$STAGE|g" -e "s|\${VERSION}|$VERSION|g" -e "s|\${ARCH}|$ARCH|g" dist/nfpm.yaml >"$STAGE/nfpm.yaml"
"$NFPM" package --config "$STAGE/nfpm.yaml" --packager deb --target "$OUT/hagate_${VERSION}_${ARCH}.deb" >&2
echo "$OUT/hagate_${VERSION}_${ARCH}.deb"
