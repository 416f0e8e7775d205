#!/usr/bin/env bash
# Side-by-side benchmark of ouro, borg and restic on the same input, in one run.
# Installs the peers (Debian packages) when missing. Writes bench/RESULTS.md.
#   bench/compare.sh [FILE]   FILE defaults to a tar of the Rust toolchain's lib/ (~515 MiB)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
work=${BENCH_WORK:-$root/bench/work}
mkdir -p "$work"

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
need=()
for p in borg:borgbackup restic:restic /usr/bin/time:time bc:bc; do
  command -v "${p%%:*}" >/dev/null 2>&1 || need+=("${p#*:}")
done
if [ ${#need[@]} -gt 0 ]; then
  as_root apt-get update -qq && DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${need[@]}" >/dev/null
fi
cargo build --release --locked -q -p ouro-cli
ouro=$root/target/release/ouro

input=${1:-}
if [ -z "$input" ]; then
  input=$work/rustlib.tar
  if [ ! -f "$input" ]; then
    tar cf "$input" -C "$(rustc --print sysroot)" lib
  fi
fi
size=$(stat -c %s "$input")
cat "$input" >/dev/null # warm the page cache so every tool reads from memory

# run LABEL CMD...: wall seconds and peak RSS (KB) of CMD into $secs/$rss
run() {
  local label=$1; shift
  /usr/bin/time -f "%e %M" -o "$work/time.txt" "$@" >/dev/null 2>"$work/err.txt" || { cat "$work/err.txt"; exit 1; }
  read -r secs rss <"$work/time.txt"
  printf '%-16s %8.2f s %8.1f MB/s  peak RSS %6d MB\n' "$label" "$secs" "$(echo "$size / $secs / 1000000" | bc -l)" "$((rss / 1024))" >&2
}

export OURO_STORE=$work/ouro-store OURO_IDENTITY=$work/ouro-id.txt
export BORG_PASSPHRASE=bench RESTIC_PASSWORD=bench BORG_RELOCATED_REPO_ACCESS_IS_OK=yes
rm -rf "$work"/ouro-store "$work"/ouro-id.txt "$work"/borg "$work"/restic "$work"/out
"$ouro" init -q
borg init -e repokey-blake2 "$work/borg" 2>/dev/null
restic init -q -r "$work/restic"

declare -A T R
run "ouro put" "$ouro" put bench "$input"; T[ouro_put]=$secs; R[ouro_put]=$rss
run "borg create" borg create -C zstd,3 "$work/borg::a" "$input"; T[borg_put]=$secs; R[borg_put]=$rss
run "restic backup" restic -q -r "$work/restic" backup "$input"; T[restic_put]=$secs; R[restic_put]=$rss
mkdir -p "$work/out"
run "ouro get" "$ouro" get bench -o "$work/out/ouro"; T[ouro_get]=$secs; R[ouro_get]=$rss
cmp "$input" "$work/out/ouro"
run "ouro get >null" sh -c "'$ouro' get bench >/dev/null"; T[ouro_get_null]=$secs
cd "$work/out"; run "borg extract" borg extract "$work/borg::a"; T[borg_get]=$secs; R[borg_get]=$rss; cd "$root"
run "restic restore" restic -q -r "$work/restic" restore latest --target "$work/out/restic"; T[restic_get]=$secs; R[restic_get]=$rss
rm -rf "$work/out"

ouro_stored=$("$ouro" stats --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["stored_bytes"])')
ouro_parity=$("$ouro" stats --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["stored_with_parity_bytes"])')
borg_stored=$(du -sb "$work/borg" | cut -f1)
restic_stored=$(du -sb "$work/restic" | cut -f1)

r() { echo "scale=2; $1 / $2" | bc -l; }
mb() { echo "scale=1; $1 / 1000000" | bc -l; }
{
  echo "# Benchmark results"
  echo
  echo "$(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores ($(lscpu | sed -n 's/Model name: *//p' | head -1)), input $(basename "$input"): $(mb "$size") MB."
  echo "ouro $(git rev-parse --short HEAD) (4+2, zstd 3, 1 MiB chunks); $(borg --version); $(restic version | cut -d' ' -f1-2). Reproduce: \`bench/compare.sh\`."
  echo
  echo "| tool | put s | put MB/s | get s | get MB/s | stored MB | peak RSS put / get MB |"
  echo "|---|---|---|---|---|---|---|"
  echo "| ouro | ${T[ouro_put]} | $(echo "$size/${T[ouro_put]}/1000000" | bc) | ${T[ouro_get]} | $(echo "$size/${T[ouro_get]}/1000000" | bc) | $(mb "$ouro_stored") (+ parity: $(mb "$ouro_parity")) | $((R[ouro_put]/1024)) / $((R[ouro_get]/1024)) |"
  echo "| borg -C zstd,3 | ${T[borg_put]} | $(echo "$size/${T[borg_put]}/1000000" | bc) | ${T[borg_get]} | $(echo "$size/${T[borg_get]}/1000000" | bc) | $(mb "$borg_stored") | $((R[borg_put]/1024)) / $((R[borg_get]/1024)) |"
  echo "| restic | ${T[restic_put]} | $(echo "$size/${T[restic_put]}/1000000" | bc) | ${T[restic_get]} | $(echo "$size/${T[restic_get]}/1000000" | bc) | $(mb "$restic_stored") | $((R[restic_put]/1024)) / $((R[restic_get]/1024)) |"
  echo
  echo "Ratios (ouro / peer; time: lower is better):"
  echo
  echo "- put time: $(r "${T[ouro_put]}" "${T[borg_put]}")x borg, $(r "${T[ouro_put]}" "${T[restic_put]}")x restic"
  echo "- get time: $(r "${T[ouro_get]}" "${T[borg_get]}")x borg, $(r "${T[ouro_get]}" "${T[restic_get]}")x restic (ouro get to a file includes fsync; to /dev/null: ${T[ouro_get_null]} s, $(echo "$size/${T[ouro_get_null]}/1000000" | bc) MB/s)"
  echo "- stored bytes (parity not counted): $(r "$ouro_stored" "$borg_stored")x borg, $(r "$ouro_stored" "$restic_stored")x restic"
  echo
  echo "Peak RSS of ouro includes LMDB's memory-mapped file pages (page cache, reclaimable); see README, \"Memory\"."
} >"$root/bench/RESULTS.md"
cat "$root/bench/RESULTS.md"
