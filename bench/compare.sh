#!/usr/bin/env bash
# Side-by-side benchmark of ouro, borg and restic on the same input, in one run.
# Installs the peers (Debian packages) when missing. Writes bench/RESULTS.md.
#   [REPS=3] bench/compare.sh [FILE [TREE]]
#     FILE defaults to a tar of the Rust toolchain's lib/ (~540 MB of real binaries)
#     TREE defaults to /usr/share (tens of thousands of files)
source "$(dirname "$0")/common.sh"
need borg:borgbackup restic:restic /usr/bin/time:time bc:bc git:git
build_ouro

input=${1:-}
if [ -z "$input" ]; then
  input=$work/rustlib.tar
  if [ ! -f "$input" ]; then
    tar cf "$input" -C "$(rustc --print sysroot)" lib
  fi
fi
size=$(stat -c %s "$input")
tree=${2:-/usr/share}
cat "$input" >/dev/null # warm the page cache so every tool reads from memory

# run LABEL CMD...: wall seconds and peak RSS (KB) of CMD into $secs/$rss
run() {
  local label=$1; shift
  # Let the disk settle: freeing the previous run's files (ext4 with discard) slows the
  # first writes that follow by up to 10x on this kind of VM.
  sync; sleep 2
  /usr/bin/time -f "%e %M" -o "$work/time.txt" "$@" >/dev/null 2>"$work/err.txt" || { cat "$work/err.txt"; exit 1; }
  read -r secs rss <"$work/time.txt"
  printf '%-16s %8.2f s %8.1f MB/s  peak RSS %6d MB\n' "$label" "$secs" "$(echo "$size / $secs / 1000000" | bc -l)" "$((rss / 1024))" >&2
}

# The first (writing) runs are repeated REPS times on fresh stores, the tools taking turns,
# and the median is reported: on a shared machine one run can be off by 20%.
reps=${REPS:-3}
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }
declare -A T R RUNS

export OURO_STORE=$work/ouro-store OURO_IDENTITY=$work/ouro-id.txt
export BORG_PASSPHRASE=bench RESTIC_PASSWORD=bench BORG_RELOCATED_REPO_ACCESS_IS_OK=yes
rm -rf "$work"/ouro-id.txt "$work"/out
for i in $(seq "$reps"); do
  rm -rf "$work"/ouro-store "$work"/borg "$work"/restic
  "$ouro" init -q
  borg init -e repokey-blake2 "$work/borg" 2>/dev/null
  restic init -q -r "$work/restic"
  run "ouro put" "$ouro" put bench "$input"; RUNS[ouro_put]+=" $secs"; R[ouro_put]=$rss
  run "borg create" borg create -C zstd,3 "$work/borg::a" "$input"; RUNS[borg_put]+=" $secs"; R[borg_put]=$rss
  run "restic backup" restic -q -r "$work/restic" backup "$input"; RUNS[restic_put]+=" $secs"; R[restic_put]=$rss
done
for t in ouro_put borg_put restic_put; do T[$t]=$(median ${RUNS[$t]}); done
export GIT_AUTHOR_NAME=bench GIT_AUTHOR_EMAIL=b@b GIT_COMMITTER_NAME=bench GIT_COMMITTER_EMAIL=b@b
rm -rf "$work/git-a" && git init -q "$work/git-a"
run "git add+commit" sh -c "git --git-dir='$work/git-a/.git' --work-tree='$(dirname "$input")' add '$(basename "$input")' && git --git-dir='$work/git-a/.git' --work-tree='$(dirname "$input")' commit -qm a"; T[git_put]=$secs; R[git_put]=$rss
mkdir -p "$work/out"
run "ouro get" "$ouro" get bench -o "$work/out/ouro"; T[ouro_get]=$secs; R[ouro_get]=$rss
cmp "$input" "$work/out/ouro"
run "ouro get >null" sh -c "'$ouro' get bench >/dev/null"; T[ouro_get_null]=$secs
cd "$work/out"; run "borg extract" borg extract "$work/borg::a"; T[borg_get]=$secs; R[borg_get]=$rss; cd "$root"
run "restic restore" restic -q -r "$work/restic" restore latest --target "$work/out/restic"; T[restic_get]=$secs; R[restic_get]=$rss
cd "$work/out"; run "git checkout" sh -c "git --git-dir='$work/git-a/.git' --work-tree='$work/out' checkout -f HEAD -- '$(basename "$input")'"; T[git_get]=$secs; R[git_get]=$rss; cd "$root"
rm -rf "$work/out"
git_stored=$(du -sb "$work/git-a/.git" | cut -f1)

# (b) a tree of many files, then an unchanged re-run
echo "tree: $tree ($(find "$tree" -type f | wc -l) files)" >&2
# Warm the page cache with the whole tree, so that the first tool timed does not pay for
# reading it from disk and every tool reads from memory.
tar cf - "$tree" 2>/dev/null | cat >/dev/null
export OURO_STORE=$work/ouro-tree
for i in $(seq "$reps"); do
  rm -rf "$work/ouro-tree" "$work/borg-tree" "$work/restic-tree"
  "$ouro" init -q
  borg init -e repokey-blake2 "$work/borg-tree" 2>/dev/null
  restic init -q -r "$work/restic-tree"
  run "ouro put -r" "$ouro" put -r "$tree" share -q; RUNS[ouro_tree]+=" $secs"; R[ouro_tree]=$rss
  run "borg create -r" borg create -C zstd,3 "$work/borg-tree::a" "$tree"; RUNS[borg_tree]+=" $secs"; R[borg_tree]=$rss
  run "restic backup -r" restic -q -r "$work/restic-tree" backup "$tree"; RUNS[restic_tree]+=" $secs"; R[restic_tree]=$rss
done
for t in ouro_tree borg_tree restic_tree; do T[$t]=$(median ${RUNS[$t]}); done
run "ouro put -r (again)" "$ouro" put -r "$tree" share -q; T[ouro_tree2]=$secs
run "borg (again)" borg create -C zstd,3 "$work/borg-tree::b" "$tree"; T[borg_tree2]=$secs
run "restic (again)" restic -q -r "$work/restic-tree" backup "$tree"; T[restic_tree2]=$secs
rm -rf "$work/git-tree"
git init -q "$work/git-tree"
run "git add -A+commit" sh -c "git --git-dir='$work/git-tree/.git' --work-tree='$tree' add -A && git --git-dir='$work/git-tree/.git' --work-tree='$tree' commit -qm a"; T[git_tree]=$secs; R[git_tree]=$rss
run "git (again)" sh -c "git --git-dir='$work/git-tree/.git' --work-tree='$tree' add -A && git --git-dir='$work/git-tree/.git' --work-tree='$tree' commit -qm b --allow-empty"; T[git_tree2]=$secs
ouro_tree_stored=$("$ouro" stats --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["stored_bytes"])')
ouro_tree_file=$(du -sb "$work/ouro-tree" | cut -f1)
borg_tree_stored=$(du -sb "$work/borg-tree" | cut -f1)
restic_tree_stored=$(du -sb "$work/restic-tree" | cut -f1)
git_tree_stored=$(du -sb "$work/git-tree/.git" | cut -f1)
export OURO_STORE=$work/ouro-store

ouro_stored=$("$ouro" stats --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["stored_bytes"])')
ouro_parity=$("$ouro" stats --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["stored_with_parity_bytes"])')
borg_stored=$(du -sb "$work/borg" | cut -f1)
restic_stored=$(du -sb "$work/restic" | cut -f1)

r() { echo "$1 / $2" | bc -l | xargs printf '%.2f'; }
# runs A B C: " a1/b1/c1, a2/b2/c2, ..." from the per-run times
runs() {
  local a=(${RUNS[$1]}) b=(${RUNS[$2]}) c=(${RUNS[$3]}) i out=""
  for i in "${!a[@]}"; do out+=" ${a[$i]}/${b[$i]}/${c[$i]},"; done
  echo "${out%,}"
}
mb() { echo "scale=1; $1 / 1000000" | bc -l; }
{
  echo "# Benchmark results"
  echo
  echo "$(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores ($(lscpu | sed -n 's/Model name: *//p' | head -1)), input $(basename "$input"): $(mb "$size") MB."
  echo "ouro $(git rev-parse --short HEAD) (4+2, zstd 3, 1 MiB chunks); $(borg --version); $(restic version | cut -d' ' -f1-2). Reproduce: \`bench/compare.sh\`."
  echo
  echo "## (a) One file"
  echo
  echo "| tool | put s | put MB/s | get s | get MB/s | stored MB | peak RSS put / get MB |"
  echo "|---|---|---|---|---|---|---|"
  echo "| ouro | ${T[ouro_put]} | $(echo "$size/${T[ouro_put]}/1000000" | bc) | ${T[ouro_get]} | $(echo "$size/${T[ouro_get]}/1000000" | bc) | $(mb "$ouro_stored") (+ parity: $(mb "$ouro_parity")) | $((R[ouro_put]/1024)) / $((R[ouro_get]/1024)) |"
  echo "| borg -C zstd,3 | ${T[borg_put]} | $(echo "$size/${T[borg_put]}/1000000" | bc) | ${T[borg_get]} | $(echo "$size/${T[borg_get]}/1000000" | bc) | $(mb "$borg_stored") | $((R[borg_put]/1024)) / $((R[borg_get]/1024)) |"
  echo "| restic | ${T[restic_put]} | $(echo "$size/${T[restic_put]}/1000000" | bc) | ${T[restic_get]} | $(echo "$size/${T[restic_get]}/1000000" | bc) | $(mb "$restic_stored") | $((R[restic_put]/1024)) / $((R[restic_get]/1024)) |"
  echo "| git (add+commit, checkout) | ${T[git_put]} | $(echo "$size/${T[git_put]}/1000000" | bc) | ${T[git_get]} | $(echo "$size/${T[git_get]}/1000000" | bc) | $(mb "$git_stored") | $((R[git_put]/1024)) / $((R[git_get]/1024)) |"
  echo
  echo "Ratios (ouro / peer; time: lower is better):"
  echo
  echo "- put time: $(r "${T[ouro_put]}" "${T[borg_put]}")x borg, $(r "${T[ouro_put]}" "${T[restic_put]}")x restic (medians of $reps runs; each run, ouro / borg / restic s:$(runs ouro_put borg_put restic_put))"
  echo "- get time: $(r "${T[ouro_get]}" "${T[borg_get]}")x borg, $(r "${T[ouro_get]}" "${T[restic_get]}")x restic (ouro get to a file includes fsync; to /dev/null: ${T[ouro_get_null]} s, $(echo "$size/${T[ouro_get_null]}/1000000" | bc) MB/s)"
  echo "- stored bytes (parity not counted): $(r "$ouro_stored" "$borg_stored")x borg, $(r "$ouro_stored" "$restic_stored")x restic"
  echo
  echo "## (b) A tree: $tree, $(find "$tree" -type f | wc -l) files, $(du -sb "$tree" | cut -f1 | xargs -I{} echo "scale=1; {} / 1000000" | bc) MB"
  echo
  echo "| tool | first run s | unchanged re-run s | stored MB | peak RSS MB |"
  echo "|---|---|---|---|---|"
  echo "| ouro put -r | ${T[ouro_tree]} | ${T[ouro_tree2]} | $(mb "$ouro_tree_stored") (store directory with parity: $(mb "$ouro_tree_file")) | $((R[ouro_tree]/1024)) |"
  echo "| borg create -C zstd,3 | ${T[borg_tree]} | ${T[borg_tree2]} | $(mb "$borg_tree_stored") | $((R[borg_tree]/1024)) |"
  echo "| restic backup | ${T[restic_tree]} | ${T[restic_tree2]} | $(mb "$restic_tree_stored") | $((R[restic_tree]/1024)) |"
  echo "| git add -A + commit | ${T[git_tree]} | ${T[git_tree2]} | $(mb "$git_tree_stored") | $((R[git_tree]/1024)) |"
  echo
  echo "First runs are medians of $reps (each run, ouro / borg / restic s:$(runs ouro_tree borg_tree restic_tree))."
  echo
  echo "Ratios: put -r time $(r "${T[ouro_tree]}" "${T[restic_tree]}")x restic, $(r "${T[ouro_tree]}" "${T[borg_tree]}")x borg; stored bytes $(r "$ouro_tree_stored" "$borg_tree_stored")x borg, $(r "$ouro_tree_stored" "$restic_tree_stored")x restic; unchanged re-run ${T[ouro_tree2]} s."
  echo
  echo "Peak RSS of ouro includes LMDB's memory-mapped file pages (page cache, reclaimable); see README, \"Memory\"."
} >"$root/bench/RESULTS.md"
cat "$root/bench/RESULTS.md"
