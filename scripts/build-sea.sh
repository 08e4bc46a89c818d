#!/usr/bin/env bash
# Builds velero-download as one executable (Node's single executable applications): the client
# bundled into one CommonJS file by esbuild, injected by postject into a copy of this project's
# Node 24. Neither tool is a dependency of the project: npx fetches them from the npm registry.
# Usage: scripts/build-sea.sh [OUT]   (default: dist-sea/velero-download)
set -euo pipefail
cd "$(dirname "$0")/.."
NODE=$(readlink -f node_modules/.bin/node)
OUT=${1:-dist-sea/velero-download}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
VERSION=$("$NODE" -p 'require("./package.json").version')

npx --yes esbuild@0.27 src/cli/sea.ts --bundle --platform=node --target=node24 --format=cjs \
  --define:VELERO_DOWNLOAD_VERSION="\"$VERSION\"" --log-level=error --outfile="$WORK/velero-download.cjs"
cat > "$WORK/sea-config.json" <<JSON
{ "main": "$WORK/velero-download.cjs", "output": "$WORK/sea.blob", "disableExperimentalSEAWarning": true }
JSON
"$NODE" --experimental-sea-config "$WORK/sea-config.json"
mkdir -p "$(dirname "$OUT")"
cp "$NODE" "$OUT"
chmod u+w "$OUT"
npx --yes postject@1.0.0-alpha.6 "$OUT" NODE_SEA_BLOB "$WORK/sea.blob" --sentinel-fuse NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2
"$OUT" --version
