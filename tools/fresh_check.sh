#!/usr/bin/env bash
# A fresh machine, as far as one can be had here: clone HEAD into a new folder under /tmp, with HOME and
# the pip cache redirected and no data directory ($NBHELPERS_DATA_DIR unset, no MNIST or AFHQ), then run
# the README's two commands as a new user would: `make test`, and `make notebooks` for 01 and 08 in the
# smoke profile. Prints the wall time of each step; exits non-zero if either fails. Usage:
#   make fresh-check            (or: bash tools/fresh_check.sh [--keep])
set -uo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
keep=0; [ "${1:-}" = "--keep" ] && keep=1
work="$(mktemp -d /tmp/nbhelpers-fresh-XXXXXX)"
clone="$work/diffusion-notebooks"
export HOME="$work/home" PIP_CACHE_DIR="$work/pip-cache" XDG_CACHE_HOME="$work/cache"
mkdir -p "$HOME"
unset NBHELPERS_DATA_DIR NBHELPERS_OUTPUT_DIR NBHELPERS_CHECKPOINT_DIR NBHELPERS_PROFILE NBHELPERS_DEVICE \
      NBHELPERS_MAX_STEPS NBHELPERS_HOME VIRTUAL_ENV MPLBACKEND
cleanup() { if [ "$keep" = 1 ]; then echo "kept $work"; else rm -rf "$work"; fi; }
trap cleanup EXIT

step() {  # step NAME COMMAND... : run in the clone, time it, keep its log
  local name="$1"; shift
  local start end rc
  start=$(date +%s)
  ( cd "$clone" && "$@" ) >"$work/$name.log" 2>&1
  rc=$?
  end=$(date +%s)
  printf '%-28s %s in %ss (log: %s)\n' "$name" "$([ $rc = 0 ] && echo ok || echo "FAILED ($rc)")" \
    "$((end - start))" "$work/$name.log"
  if [ $rc != 0 ]; then tail -n 30 "$work/$name.log"; fi
  return $rc
}

git clone --quiet --no-hardlinks "$repo" "$clone" || exit 1
echo "fresh clone of $(git -C "$clone" rev-parse --short HEAD) in $clone (HOME=$HOME, no NBHELPERS_DATA_DIR)"
status=0
step "make test" make test || status=1
grep -E '^(=+ .*(passed|failed).* =+|[0-9]+ passed)' "$work/make test.log" | tail -n 1
grep -E '^SKIPPED' "$work/make test.log" | sed 's/^/  /'  # what a machine without data or extras leaves out, and why
step "make notebooks 01,08 smoke" make notebooks NOTEBOOKS=01,08 PROFILE=smoke || status=1
for nb in 01_sdes 08_afhq_ddpm; do
  m="$clone/build/metrics/$nb.json"
  [ -f "$m" ] && printf '  %s: data = %s\n' "$nb" "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["metrics"].get("data", "none used"))' "$m")"
done
exit $status
