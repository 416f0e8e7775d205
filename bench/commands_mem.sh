#!/usr/bin/env bash
# Peak memory and time of each command that reads a whole store, on one store built from TREE.
#   [OURO_BIN=...] [OURO_BASE=...] bench/commands_mem.sh [TREE]
#     TREE defaults to /usr/share. Builds a store (put -r twice, so diff and log have two
#     snapshots) under bench/work/cmdmem, then runs every reading command on it and prints a
#     markdown table: wall s, VmHWM, RssAnon and RssFile (MB; see sample_mem in common.sh).
#     RESTORE_DIR (default /dev/shm) holds get -r's restore, out of the disk's write-back.
#     OURO_BASE=/path/to/another/ouro adds its figures for the same commands on the same
#     store, the two binaries taking turns, so a change can be compared in one run.
source "$(dirname "$0")/common.sh"
build_ouro
tree=${1:-/usr/share}
store=$work/cmdmem/store
restore=${RESTORE_DIR:-/dev/shm}/ouro-cmdmem-restore
rm -rf "$work/cmdmem"
mkdir -p "$work/cmdmem"
"$ouro" --store "$store" init -q >/dev/null
"$ouro" --store "$store" put -r -q "$tree" t >/dev/null
"$ouro" --store "$store" put -r -q "$tree" t >/dev/null
first=$("$ouro" --store "$store" ls t | sed -n 1p)
files=$("$ouro" --store "$store" ls t | wc -l)

# row NAME BIN ARGS...: one table row for BIN running ARGS on the store.
row() {
  local name=$1 bin=$2 out
  shift 2
  out=$work/cmdmem/sample.txt
  rm -rf "$restore"
  sample_mem "$out" "$bin" --store "$store" "$@" >/dev/null 2>&1 || true
  read -r secs hwm anon file <"$out"
  if [ "$hwm" -lt 1024 ]; then
    # Ended before the first sample (50 ms): too short to measure this way.
    printf '| %s | %s | < 0.05 | | | |\n' "$name" "$(basename "$bin")"
    return
  fi
  printf '| %s | %s | %.2f | %d | %d | %d |\n' "$name" "$(basename "$bin")" "$secs" \
    $((hwm / 1024)) $((anon / 1024)) $((file / 1024))
}

bins=("$ouro")
[ -n "${OURO_BASE:-}" ] && bins+=("$(realpath "$OURO_BASE")")
echo "Store of $tree ($files keys, two snapshots): $(du -sb "$store" | cut -f1) bytes; $(ouro_desc)."
echo
echo "| command | binary | s | VmHWM MB | RssAnon MB | RssFile MB |"
echo "|---|---|---|---|---|---|"
while read -r name args; do
  for b in "${bins[@]}"; do
    # shellcheck disable=SC2086 # ARGS are words
    row "$name" "$b" ${args//FIRST/$first}
  done
done <<EOF
ls ls
ls_-l ls -l
ls_--json ls --json
log log FIRST
snapshots snapshots
diff diff t
stats stats
verify verify
get_-r get -r t $restore
gc gc
EOF
rm -rf "$restore"
