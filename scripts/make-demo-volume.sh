#!/usr/bin/env bash
# make-demo-volume.sh - makes the demo volume backup that local mode's demo serves: a small Kopia
# repository written by Velero's own kopia build (kopia-velero, built by `npm run tools`) with
# Velero's repository settings and snapshot shape, laid out as Velero leaves it in a bucket
# (blob <id> is the object kopia/demo-app/<id>), plus the snapshot's id.
#
# Run by hand, never by the tests or at start (the output is committed under demo/volume):
#   npm run tools -- kopia-velero && bash scripts/make-demo-volume.sh
# The repository is not byte-for-byte reproducible (kopia draws its keys and blob names), so a
# re-run changes every blob and the snapshot id; the files inside are always the same.
set -euo pipefail
cd "$(dirname "$0")/.."
TOOLS_DIR="${VDS_TOOLS_DIR:-$HOME/.cache/velero-download-server/tools}"
KOPIA="${KOPIA:-$TOOLS_DIR/bin/kopia-velero}"
[[ -x "$KOPIA" ]] || { echo "no kopia at $KOPIA: run npm run tools -- kopia-velero" >&2; exit 1; }
OUT=demo/volume
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
export KOPIA_PASSWORD=static-passw0rd # Velero's default repository password
export KOPIA_CHECK_FOR_UPDATES=false KOPIA_PERSIST_CREDENTIALS_ON_CONNECT=false
K() { "$KOPIA" --config-file="$WORK/repo.config" --log-dir="$WORK/logs" --no-progress --no-auto-maintenance "$@"; }

# The volume: a pod's web root, with a log big enough for ranges and two chunks of nothing special.
SRC="$WORK/html"
mkdir -p "$SRC/about" "$SRC/assets" "$SRC/logs" "$SRC/uploads"
printf '<!doctype html>\n<title>demo-app</title>\n<h1>Hello from a Velero volume backup</h1>\n' >"$SRC/index.html"
printf 'Alice - storage\nBob - backups\n' >"$SRC/about/team.txt"
printf '<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16"><circle cx="8" cy="8" r="7"/></svg>\n' >"$SRC/assets/logo.svg"
for i in $(seq 1 3000); do printf '10.0.0.%d - - [01/Dec/2026:10:%02d:%02d +0000] "GET /index.html HTTP/1.1" 200 92\n' $((i % 250 + 1)) $((i / 60 % 60)) $((i % 60)); done >"$SRC/logs/access.log"
ln -s logs/access.log "$SRC/latest.log"
find "$SRC" -exec touch -h -d '2026-12-01 10:00:00 UTC' {} +

mkdir -p "$WORK/repo"
# Velero's settings (pkg/repository/udmrepo/kopialib/backend/common.go): hash, cipher, splitter.
K repository create filesystem --flat --path="$WORK/repo" --block-hash=BLAKE2B-256-128 \
  --encryption=AES256-GCM-HMAC-SHA256 --object-splitter=DYNAMIC-4M-BUZHASH --ecc-overhead-percent=0 \
  --cache-directory="$WORK/cache" --override-hostname=default --override-username=default >/dev/null
# Velero's uploader: source default@default, description "Kopia Uploader", pin, tags.
K snapshot create "$SRC" --override-source=default@default:/host_pods/demo-app/web-0/volumes/html \
  --description="Kopia Uploader" --pin=velero-pin --tags=snapshot-requester:pod-volume-backup \
  --tags=snapshot-uploader:kopia --tags=backup:demo-backup --tags=ns:demo-app --tags=pod:web-0 \
  --tags=volume:html --start-time='2026-12-01 10:05:00 UTC' --end-time='2026-12-01 10:05:02 UTC' --json >"$WORK/snap.json"

rm -rf "$OUT"
mkdir -p "$OUT/repository"
for f in "$WORK/repo"/*.f; do
  id="$(basename "$f" .f)"
  [[ "$id" == _log* ]] && continue # kopia's own encrypted logs: no reader needs them
  cp "$f" "$OUT/repository/$id"
done
node -e '
const s = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
const v = require("child_process").execFileSync(process.argv[2], ["--version"]).toString().split("\n")[0];
process.stdout.write(JSON.stringify({ snapshotID: s.id, size: s.rootEntry.summ.size, madeBy: `kopia ${v}`, password: "static-passw0rd" }, null, 2) + "\n");
' "$WORK/snap.json" "$KOPIA" >"$OUT/snapshot.json"
echo "demo volume: $(ls "$OUT/repository" | wc -l) blobs, snapshot $(node -p 'require("./'"$OUT"'/snapshot.json").snapshotID')" >&2
