#!/usr/bin/env bash
# tools.sh - build pinned developer tools from the Go module proxy into a cache dir.
#
#   helm            helm.sh/helm/v4/cmd/helm            (go install pkg@version)
#   kube-apiserver  k8s.io/kubernetes/cmd/kube-apiserver (wrapper module, staging pinned)
#   etcd            go.etcd.io/etcd/server/v3/etcdmain   (wrapper main, version from k8s go.mod)
#   kopia           github.com/kopia/kopia               (wrapper module, -tags nohtmlui)
#   kopia-velero    github.com/project-velero/kopia      (Velero's fork, through a replace)
#
# Usage: tools.sh [helm|kube-apiserver|etcd|kopia|kopia-velero ...]
#   With no names: all five, the tools the tests use (CI runs exactly this). The kopia repositories
#   the Kopia reader's tests read are committed under test/fixtures/kopia, so no reader test needs
#   kopia; test/kopia/fixtures.test.ts has both builds restore every fixture, and
#   test/fixtures/kopia/make-fixtures.sh remakes the fixtures with kopia. Cold, on two cores: about
#   20 minutes for the first three, 5 to 10 more for the two kopia builds (they share most modules).
#
# Environment:
#   VDS_TOOLS_DIR             cache dir (default $HOME/.cache/velero-download-server/tools);
#                             binaries go to $VDS_TOOLS_DIR/bin, stamps to $VDS_TOOLS_DIR/stamps,
#                             generated wrapper modules to $VDS_TOOLS_DIR/src.
#   VDS_HELM_VERSION          default v4.3.2
#   VDS_KUBE_VERSION          default v1.37.2 (staging modules are pinned to v0.<minor>.<patch>)
#   VDS_ETCD_VERSION          default: the go.etcd.io/etcd/server/v3 version in k8s.io/kubernetes' go.mod
#   VDS_KOPIA_VERSION         default v0.23.1
#   VDS_KOPIA_VELERO_VERSION  default v0.0.0-20260512025144-908c5c098101: the pseudo-version of
#                             github.com/project-velero/kopia that Velero's go.mod (vmware-tanzu/velero
#                             main, May 2026) replaces github.com/kopia/kopia with
#   VDS_BUILD_NICE            niceness for the go commands (default 10)
#
# Idempotent: a tool whose stamp file matches (and whose binary exists) is skipped.
# Downloads happen only through `go` (GOPROXY). Needs go >= the go line of the module's go.mod
# (k8s.io/kubernetes for the first three, kopia's for the last two: 1.25.x).
set -euo pipefail

# -h/--help: the comment above is the usage text
if [[ "${1:-}" == -h || "${1:-}" == --help ]]; then
  sed -n '2,/^set -euo pipefail/{/^#/s/^# \{0,1\}//p}' "$0"
  exit 0
fi

RECIPE=2       # bump to force a rebuild of helm, kube-apiserver and etcd when their recipe changes
KOPIA_RECIPE=1 # the same for kopia and kopia-velero

TOOLS_DIR="${VDS_TOOLS_DIR:-$HOME/.cache/velero-download-server/tools}"
mkdir -p "$TOOLS_DIR"
TOOLS_DIR="$(cd "$TOOLS_DIR" && pwd)"
BIN="$TOOLS_DIR/bin"
STAMPS="$TOOLS_DIR/stamps"
SRC="$TOOLS_DIR/src"
mkdir -p "$BIN" "$STAMPS" "$SRC"

HELM_VERSION="${VDS_HELM_VERSION:-v4.3.2}"
KUBE_VERSION="${VDS_KUBE_VERSION:-v1.37.2}"
ETCD_VERSION="${VDS_ETCD_VERSION:-}"
KOPIA_VERSION="${VDS_KOPIA_VERSION:-v0.23.1}"
KOPIA_VELERO_VERSION="${VDS_KOPIA_VELERO_VERSION:-v0.0.0-20260512025144-908c5c098101}"
NICE="${VDS_BUILD_NICE:-10}"

export GOTOOLCHAIN=local
export GOFLAGS="-buildvcs=false" # -mod=mod is passed per command where it is allowed
export GO111MODULE=on
export GOWORK=off # a go.work above the tools dir must not capture the wrapper modules

log() { printf '[tools] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
gorun() { nice -n "$NICE" go "$@"; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1fs", b - a }'; }

command -v go >/dev/null || die "go not found in PATH"

# One run at a time per cache dir.
exec 9>"$TOOLS_DIR/.lock"
flock 9

# ---------------------------------------------------------------- helpers
# stamp_ok NAME KEY: the stamp matches and the binary is there.
stamp_ok() {
  [[ -x "$BIN/$1" && -f "$STAMPS/$1" && "$(head -n1 "$STAMPS/$1")" == "$2" ]]
}
write_stamp() { # NAME KEY
  printf '%s\nbuilt-with=%s\ndate=%s\n' "$2" "$(go env GOVERSION)" "$(date -u +%FT%TZ)" >"$STAMPS/$1"
}

# probe NAME: the version the installed binary reports (empty if none).
probe() {
  local b="$BIN/$1"
  [[ -x "$b" ]] || return 0
  case "$1" in
    helm) "$b" version --template '{{.Version}}' 2>/dev/null || true ;;
    kube-apiserver) "$b" --version 2>/dev/null | awk '{print $2}' || true ;;
    etcd) "$b" --version 2>/dev/null | awk '/^etcd Version:/ {print "v" $3}' || true ;;
    # "<BuildVersion> build: <BuildInfo> from: <BuildGitHubRepo>"; BuildVersion has no leading v
    kopia | kopia-velero) "$b" --version 2>/dev/null | awk 'NR == 1 && $1 != "" {print "v" $1}' || true ;;
  esac
}

# ensure NAME VERSION KEY BUILDFN: skip, adopt or build.
declare -a SUMMARY=()
ensure() {
  local name="$1" version="$2" key="$3" fn="$4" t0
  if stamp_ok "$name" "$key"; then
    log "$name $version: up to date (stamp), skipping"
    SUMMARY+=("$name $version: skipped")
    return 0
  fi
  # a binary put there by hand (no stamp at all) that reports the right version is adopted;
  # a stale stamp (other version or recipe) always means a rebuild
  if [[ ! -f "$STAMPS/$name" && "$(probe "$name")" == "$version" ]]; then
    log "$name $version: unstamped binary reports $version, adopting it (stamp written)"
    write_stamp "$name" "$key"
    SUMMARY+=("$name $version: adopted existing binary")
    return 0
  fi
  log "$name $version: building ..."
  t0="$(now)"
  "$fn" "$version"
  [[ "$(probe "$name")" == "$version" ]] ||
    die "$name: built binary reports '$(probe "$name")', expected '$version'"
  write_stamp "$name" "$key"
  log "$name $version: built in $(elapsed "$t0") -> $BIN/$name"
  SUMMARY+=("$name $version: built in $(elapsed "$t0")")
}

# k8s_gomod: path of the (downloaded) go.mod of k8s.io/kubernetes@$KUBE_VERSION.
K8S_GOMOD=""
k8s_gomod() {
  if [[ -z "$K8S_GOMOD" ]]; then
    local json
    # go list -m fetches only .info and .mod, not the source zip
    json="$(cd "$SRC" && gorun list -m -json "k8s.io/kubernetes@$KUBE_VERSION")" ||
      die "cannot download k8s.io/kubernetes@$KUBE_VERSION: $json"
    K8S_GOMOD="$(sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",*$/\1/p' <<<"$json")"
    [[ -f "$K8S_GOMOD" ]] || die "no go.mod for k8s.io/kubernetes@$KUBE_VERSION"
  fi
  printf '%s\n' "$K8S_GOMOD"
}

# require_go VERSION WHAT: the local go is at least VERSION, which WHAT asks for
# (GOTOOLCHAIN=local: no auto-download).
require_go() {
  local have
  have="$(go env GOVERSION)"; have="${have#go}"; have="${have%% *}"
  [[ "$(printf '%s\n%s\n' "$1" "$have" | sort -V | head -n1)" == "$1" ]] ||
    die "go $1 or newer is needed ($2), this is go $have"
}

# modinfo MODULE@VERSION: `go list -m -json` of it (fetches .info and .mod only, not the zip).
modinfo() {
  local json
  json="$(cd "$SRC" && gorun list -m -json "$1" 2>&1)" || die "cannot resolve $1 through the module proxy: $json"
  printf '%s\n' "$json"
}
# json_field NAME: the first string field NAME of `go list -m -json` output on stdin.
json_field() { sed -n "s/^[[:space:]]*\"$1\": \"\\(.*\\)\",*\$/\\1/p" | head -n1; }

# --------------------------------------------------------------- builders
# install_gomod DIR: makes DIR/go.mod.new the wrapper module's go.mod. An unchanged go.mod keeps the
# go.sum (and so the module downloads) of an earlier run; a changed one starts a fresh go.sum.
install_gomod() {
  local dir="$1"
  if ! cmp -s "$dir/go.mod.new" "$dir/go.mod.gen" 2>/dev/null; then
    cp "$dir/go.mod.new" "$dir/go.mod.gen"
    cp "$dir/go.mod.new" "$dir/go.mod"
    rm -f "$dir/go.sum"
  fi
  rm -f "$dir/go.mod.new"
}

build_helm() {
  local v="$1" tmp
  tmp="$(mktemp -d "$TOOLS_DIR/.helm.XXXXXX")"
  (cd "$SRC" && GOBIN="$tmp" gorun install \
    -ldflags "-X helm.sh/helm/v4/internal/version.version=$v" \
    "helm.sh/helm/v4/cmd/helm@$v")
  mv -f "$tmp/helm" "$BIN/helm"
  rm -rf "$tmp"
}

build_kube_apiserver() {
  local v="$1" gomod dir staging goline minor info date
  gomod="$(k8s_gomod)"
  dir="$SRC/kube-apiserver-$v"
  mkdir -p "$dir"
  staging="v0.${v#v1.}" # v1.37.2 -> v0.37.2
  goline="$(awk '$1 == "go" {print $2; exit}' "$gomod")"
  require_go "$goline" "k8s.io/kubernetes@$KUBE_VERSION go.mod"
  minor="${v#v1.}"; minor="${minor%%.*}"
  {
    echo "// generated by tools.sh from k8s.io/kubernetes@$v go.mod; do not edit"
    echo "module vds.local/tools/kube-apiserver"
    echo
    echo "go $goline"
    echo
    grep -E '^godebug ' "$gomod" || true
    echo
    echo "require k8s.io/kubernetes $v"
    echo
    echo "replace ("
    # k8s.io/X => ./staging/src/k8s.io/X  becomes  k8s.io/X => k8s.io/X v0.<minor>.<patch>;
    # replacements to other modules are copied as they are; other local paths are an error.
    awk -v sv="$staging" '
      /^replace[[:space:]]*\(/ { inblk = 1; next }
      inblk && /^\)/ { inblk = 0; next }
      (inblk || /^replace[[:space:]]/) && /=>/ {
        line = $0; sub(/^replace[[:space:]]+/, "", line)
        split(line, p, /[[:space:]]*=>[[:space:]]*/)
        gsub(/^[[:space:]]+|[[:space:]]+$/, "", p[1]); gsub(/^[[:space:]]+|[[:space:]]+$/, "", p[2])
        if (p[2] ~ /^\.\/staging\//) { split(p[1], m, /[[:space:]]+/); printf "\t%s => %s %s\n", m[1], m[1], sv }
        else if (p[2] ~ /^\.|^\//) { print "unsupported local replace: " $0 > "/dev/stderr"; exit 1 }
        else printf "\t%s => %s\n", p[1], p[2]
      }' "$gomod"
    echo ")"
  } >"$dir/go.mod.new"
  install_gomod "$dir"
  log "kube-apiserver: wrapper module $dir ($(grep -c "=> k8s.io/.* $staging" "$dir/go.mod") staging modules pinned to $staging)"

  info="${gomod%.mod}.info"
  date="$(sed -n 's/.*"Time":"\([^"]*\)".*/\1/p' "$info" 2>/dev/null || true)"
  [[ -n "$date" ]] || date="1970-01-01T00:00:00Z"
  local ld="-s -w" pkg
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld+=" -X $pkg.gitVersion=$v -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    # gitCommit: the proxy does not tell the commit; empty beats the "$Format:%H$" placeholder
    ld+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$date -X $pkg.gitCommit="
  done
  (cd "$dir" && CGO_ENABLED=0 gorun build -mod=mod -trimpath -ldflags "$ld" \
    -o "$BIN/.kube-apiserver.tmp" k8s.io/kubernetes/cmd/kube-apiserver)
  mv -f "$BIN/.kube-apiserver.tmp" "$BIN/kube-apiserver"
}

etcd_version() {
  local cache="$STAMPS/.etcd-version-for-k8s-$KUBE_VERSION"
  if [[ -z "$ETCD_VERSION" && -s "$cache" ]]; then
    ETCD_VERSION="$(cat "$cache")"
  fi
  if [[ -z "$ETCD_VERSION" ]]; then
    ETCD_VERSION="$(awk '$1 == "go.etcd.io/etcd/server/v3" {print $2; exit}' "$(k8s_gomod)")"
    [[ -n "$ETCD_VERSION" ]] || die "go.etcd.io/etcd/server/v3 not found in k8s.io/kubernetes@$KUBE_VERSION go.mod"
    printf '%s\n' "$ETCD_VERSION" >"$cache"
  fi
  printf '%s\n' "$ETCD_VERSION"
}

build_etcd() {
  local v="$1" dir goline m
  dir="$SRC/etcd-$v"
  mkdir -p "$dir"
  goline="$(awk '$1 == "go" {print $2; exit}' "$(k8s_gomod)")"
  require_go "$goline" "k8s.io/kubernetes@$KUBE_VERSION go.mod"
  {
    echo "// generated by tools.sh; do not edit"
    echo "module vds.local/tools/etcd"
    echo
    echo "go $goline"
    echo
    echo "require ("
    for m in server/v3 api/v3 client/pkg/v3 client/v3 pkg/v3; do
      echo "	go.etcd.io/etcd/$m $v"
    done
    echo ")"
  } >"$dir/go.mod.new"
  install_gomod "$dir"
  cat >"$dir/main.go" <<'EOF'
// Code generated by tools.sh; DO NOT EDIT.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
EOF
  (cd "$dir" && CGO_ENABLED=0 gorun build -mod=mod -trimpath \
    -ldflags "-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA=$v" \
    -o "$BIN/.etcd.tmp" .)
  mv -f "$BIN/.etcd.tmp" "$BIN/etcd"
}

# build_kopia_from NAME MODULE VERSION GITHUB_REPO: a wrapper module $SRC/NAME-VERSION that requires
# github.com/kopia/kopia (itself, or replaced by MODULE@VERSION) and builds its main package.
#
# Why a wrapper module and not `go install github.com/kopia/kopia@v0.23.1`:
#   - go install looks up the module's deprecation through its version list (@v/list), and the
#     module proxy reachable here refuses that list for github.com/kopia/kopia (403 "This module
#     version is not available"), so go install fails although v0.23.1 itself is served;
#   - Velero's fork declares `module github.com/kopia/kopia` in its go.mod, so it builds only
#     through a replace directive, as Velero's own go.mod does.
# -tags nohtmlui (kopia's own build tag: no embedded web UI; `kopia server` still serves its API): the
# fork pins a github.com/kopia/htmluibuild pseudo-version whose zip the proxy refuses (403), and the
# UI is of no use to the tests. CGO_ENABLED=0: kopia needs no cgo, and a static binary runs anywhere.
# The fork is upstream v0.23.0 plus one Azure helper file: the repository format is the same.
build_kopia_from() {
  local name="$1" mod="$2" v="$3" ghrepo="$4" json gomod goline commit dir ld
  json="$(modinfo "$mod@$v")"
  gomod="$(json_field GoMod <<<"$json")"
  [[ -f "$gomod" ]] || die "no go.mod for $mod@$v"
  awk '$1 == "module" {print $2; exit}' "$gomod" | grep -qx 'github.com/kopia/kopia' ||
    die "$mod@$v: go.mod does not declare module github.com/kopia/kopia"
  goline="$(awk '$1 == "go" {print $2; exit}' "$gomod")"
  require_go "$goline" "$mod@$v go.mod"
  # the commit the proxy reports (Origin.Hash), for `kopia --version`; "unknown" if it does not
  commit="$(json_field Hash <<<"$json")"
  dir="$SRC/$name-$v"
  mkdir -p "$dir"
  {
    echo "// generated by tools.sh; do not edit"
    echo "module vds.local/tools/$name"
    echo
    echo "go $goline"
    echo
    if [[ "$mod" == "github.com/kopia/kopia" ]]; then
      echo "require github.com/kopia/kopia $v"
    else
      # as in Velero's go.mod: require the upstream path (any version), replace it with the fork
      echo "require github.com/kopia/kopia v0.16.0"
      echo
      echo "replace github.com/kopia/kopia => $mod $v"
    fi
  } >"$dir/go.mod.new"
  install_gomod "$dir"
  # kopia's own release flags (its Makefile's KOPIA_BUILD_FLAGS); BuildVersion without the leading v
  ld="-s -w -X github.com/kopia/kopia/repo.BuildVersion=${v#v}"
  ld+=" -X github.com/kopia/kopia/repo.BuildInfo=${commit:-unknown}"
  ld+=" -X github.com/kopia/kopia/repo.BuildGitHubRepo=$ghrepo"
  (cd "$dir" && CGO_ENABLED=0 gorun build -mod=mod -trimpath -tags nohtmlui -ldflags "$ld" \
    -o "$BIN/.$name.tmp" github.com/kopia/kopia)
  mv -f "$BIN/.$name.tmp" "$BIN/$name"
}

build_kopia() { build_kopia_from kopia github.com/kopia/kopia "$1" kopia/kopia; }
build_kopia_velero() { build_kopia_from kopia-velero github.com/project-velero/kopia "$1" project-velero/kopia; }

# ------------------------------------------------------------------- main
want=("$@")
# kopia and kopia-velero are opt-in: the tests read committed fixtures, not kopia (see the top)
[[ ${#want[@]} -gt 0 ]] || want=(helm kube-apiserver etcd kopia kopia-velero)
T0="$(now)"
log "tools dir: $TOOLS_DIR ($(go env GOVERSION))"
for t in "${want[@]}"; do
  case "$t" in
    helm) ensure helm "$HELM_VERSION" "helm $HELM_VERSION recipe=$RECIPE" build_helm ;;
    kube-apiserver) ensure kube-apiserver "$KUBE_VERSION" "kube-apiserver $KUBE_VERSION recipe=$RECIPE" build_kube_apiserver ;;
    etcd)
      ev="$(etcd_version)"
      ensure etcd "$ev" "etcd $ev recipe=$RECIPE" build_etcd ;;
    kopia) ensure kopia "$KOPIA_VERSION" "kopia $KOPIA_VERSION recipe=$KOPIA_RECIPE" build_kopia ;;
    kopia-velero)
      ensure kopia-velero "$KOPIA_VELERO_VERSION" \
        "kopia-velero $KOPIA_VELERO_VERSION recipe=$KOPIA_RECIPE" build_kopia_velero ;;
    *) die "unknown tool '$t' (want helm, kube-apiserver, etcd, kopia, kopia-velero)" ;;
  esac
done
log "summary (total $(elapsed "$T0")):"
for s in "${SUMMARY[@]}"; do log "  $s"; done
log "binaries in $BIN"
