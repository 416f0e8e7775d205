#!/usr/bin/env bash
# Side-by-side benchmark of ouro, borg and restic on the same input, in one run.
# Installs the peers (Debian packages) when missing. Writes bench/RESULTS.md.
#   [REPS=3] bench/compare.sh [FILE [TREE]]
#     FILE defaults to a tar of the Rust toolchain's lib/ (~540 MB of real binaries)
#     TREE defaults to /usr/share (tens of thousands of files)
#     Sections (a) one file, (b) a tree, (c) snapshots: put -r / get -r against restic.
#   [REPS=3] bench/compare.sh snapshots [TREE]
#     Only (c): replaces that section of bench/RESULTS.md, keeps the others.
source "$(dirname "$0")/common.sh"
need borg:borgbackup restic:restic /usr/bin/time:time bc:bc git:git rsync:rsync
build_ouro

# The first (writing) runs are repeated REPS times on fresh stores, the tools taking turns,
# and the median is reported: on a shared machine one run can be off by 20%.
reps=${REPS:-3}
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }
r() { echo "$1 / $2" | bc -l | xargs printf '%.2f'; }
mb() { echo "scale=1; $1 / 1000000" | bc -l; }

# (c) Snapshots: ouro put -r / get -r against restic backup / restore on TREE, the tools
# taking turns in every step (2 noisy cores: never one tool minutes after the other).
# Measures the first run, the unchanged re-run (time and bytes it adds to the store), the
# restore into an empty directory under /tmp, and how exact the restore is: the lines of
# `rsync -n -aHAX --numeric-ids -c --itemize-changes --delete TREE/ RESTORED/`.
# Prints a markdown section on stdout; progress on stderr.
snapshot_case() {
  local tree=$1 i t secs rss before
  local sw=$work/snap rt
  rt=$(mktemp -d /tmp/ouro-bench-restore.XXXXXX)
  declare -A SR SX
  # timed KEY CMD...: wall seconds (appended to SR[KEY]) and peak RSS KB (SX[KEY]) of CMD.
  timed() {
    local key=$1; shift
    # Let the disk settle: freeing the previous step's files (ext4 with discard) slows the
    # first writes that follow by up to 10x on this kind of VM.
    sync; sleep 2
    /usr/bin/time -f "%e %M" -o "$sw/time.txt" "$@" >/dev/null 2>"$sw/err.txt" || { cat "$sw/err.txt" >&2; return 1; }
    read -r secs rss <"$sw/time.txt"
    SR[$key]+=" $secs"; SX[$key]=$rss
    printf '%-22s %8.2f s  peak RSS %6d MB\n' "$key" "$secs" "$((rss / 1024))" >&2
  }
  rm -rf "$sw"; mkdir -p "$sw"
  local files entries bytes
  files=$(find "$tree" -type f | wc -l); entries=$(find "$tree" | wc -l); bytes=$(du -sb "$tree" | cut -f1)
  echo "(c) snapshots: $tree, $files files, $entries entries; restores under $rt" >&2
  # Every tool reads the tree from the page cache.
  tar cf - "$tree" 2>/dev/null | cat >/dev/null
  export RESTIC_PASSWORD=bench
  local so=$sw/ouro-store srepo=$sw/restic
  for i in $(seq "$reps"); do
    rm -rf "$so" "$srepo"
    OURO_STORE=$so OURO_IDENTITY=$sw/ouro-id.txt "$ouro" init -q
    restic init -q -r "$srepo"
    # First runs, then unchanged re-runs; who goes first alternates between repetitions.
    ouro_again() {
      before=$(du -sb "$so" | cut -f1)
      timed ouro_again env OURO_STORE="$so" OURO_IDENTITY="$sw/ouro-id.txt" "$ouro" put -r "$tree" tree -q
      SR[ouro_added]+=" $(( $(du -sb "$so" | cut -f1) - before ))"
    }
    restic_again() {
      before=$(du -sb "$srepo" | cut -f1)
      timed restic_again restic -q -r "$srepo" backup "$tree"
      SR[restic_added]+=" $(( $(du -sb "$srepo" | cut -f1) - before ))"
    }
    if [ $((i % 2)) = 1 ]; then
      timed ouro_put env OURO_STORE="$so" OURO_IDENTITY="$sw/ouro-id.txt" "$ouro" put -r "$tree" tree -q
      timed restic_put restic -q -r "$srepo" backup "$tree"
      ouro_again; restic_again
    else
      timed restic_put restic -q -r "$srepo" backup "$tree"
      timed ouro_put env OURO_STORE="$so" OURO_IDENTITY="$sw/ouro-id.txt" "$ouro" put -r "$tree" tree -q
      restic_again; ouro_again
    fi
    # Restores into empty directories, taking turns too; the last ones are kept and checked.
    rm -rf "$rt/ouro" "$rt/restic"
    if [ $((i % 2)) = 1 ]; then
      timed ouro_get env OURO_STORE="$so" OURO_IDENTITY="$sw/ouro-id.txt" "$ouro" get -r tree "$rt/ouro" -q
      timed restic_get restic -q -r "$srepo" restore latest --target "$rt/restic"
    else
      timed restic_get restic -q -r "$srepo" restore latest --target "$rt/restic"
      timed ouro_get env OURO_STORE="$so" OURO_IDENTITY="$sw/ouro-id.txt" "$ouro" get -r tree "$rt/ouro" -q
    fi
  done
  local rs=(rsync -n -aHAX --numeric-ids -c --itemize-changes --delete)
  "${rs[@]}" "$tree/" "$rt/ouro/" >"$sw/ouro.diff" 2>&1 || true
  "${rs[@]}" "$tree/" "$rt/restic$tree/" >"$sw/restic.diff" 2>&1 || true
  local od rd
  od=$(grep -c . "$sw/ouro.diff" || true); rd=$(grep -c . "$sw/restic.diff" || true)
  echo "rsync differences: ouro $od, restic $rd" >&2
  local k
  declare -A M
  for k in ouro_put restic_put ouro_again restic_again ouro_get restic_get ouro_added restic_added; do
    M[$k]=$(median ${SR[$k]})
  done
  # runs A B: " a1/b1, a2/b2, ..." from the per-repetition figures
  runs2() { local a=(${SR[$1]}) b=(${SR[$2]}) j out=""; for j in "${!a[@]}"; do out+=" ${a[$j]}/${b[$j]},"; done; echo "${out%,}"; }
  verdict() { if [ "$(echo "$1" | bc -l)" = 1 ]; then echo met; else echo "**missed**"; fi; }
  local rp ra rg
  rp=$(r "${M[ouro_put]}" "${M[restic_put]}"); ra=$(r "${M[ouro_again]}" "${M[restic_again]}"); rg=$(r "${M[ouro_get]}" "${M[restic_get]}")
  echo "## (c) Snapshots: put -r / get -r against restic on $tree ($files files, $entries entries, $(mb "$bytes") MB)"
  echo
  echo "$(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores ($(lscpu | sed -n 's/Model name: *//p' | head -1)); ouro $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src cli 2>/dev/null || echo ' + uncommitted changes') (release build, 4+2, zstd 3); $(restic version | cut -d' ' -f1-2)."
  echo "Reproduce: \`bench/compare.sh snapshots $tree\` (as root, so that both restore owners). Medians of $reps repetitions; in each"
  echo "step the two tools run back to back, and who goes first alternates. Restores go into an empty directory under /tmp."
  echo
  echo "| | ouro | restic | ouro / restic | target | |"
  echo "|---|---|---|---|---|---|"
  echo "| first run s | ${M[ouro_put]} | ${M[restic_put]} | ${rp}x | <= 0.5x | $(verdict "$rp <= 0.5") |"
  echo "| unchanged re-run s | ${M[ouro_again]} | ${M[restic_again]} | ${ra}x | <= 0.3x and < 1 s | $(verdict "$ra <= 0.3 && ${M[ouro_again]} < 1") |"
  echo "| bytes the re-run adds to the store (du -sb) | ${M[ouro_added]} | ${M[restic_added]} | | < 65536 | $(verdict "${M[ouro_added]} < 65536") |"
  echo "| restore s | ${M[ouro_get]} | ${M[restic_get]} | ${rg}x | <= 0.5x | $(verdict "$rg <= 0.5") |"
  echo "| rsync -aHAX -c differences after the restore | $od | $rd | | 0 | $(verdict "$od == 0") |"
  echo "| peak RSS first run / restore MB | $((SX[ouro_put] / 1024)) / $((SX[ouro_get] / 1024)) | $((SX[restic_put] / 1024)) / $((SX[restic_get] / 1024)) | | | |"
  echo
  echo "Each repetition, ouro / restic: first run s:$(runs2 ouro_put restic_put); re-run s:$(runs2 ouro_again restic_again);"
  echo "bytes added by the re-run:$(runs2 ouro_added restic_added); restore s:$(runs2 ouro_get restic_get)."
  for t in ouro restic; do
    if [ -s "$sw/$t.diff" ]; then
      echo
      echo "First rsync differences of $t's restore (of $(grep -c . "$sw/$t.diff")):"
      echo
      echo '```'
      head -8 "$sw/$t.diff"
      echo '```'
    fi
  done
  rm -rf "$rt"
}

if [ "${1:-}" = snapshots ]; then
  section=$(snapshot_case "${2:-/usr/share}")
  results=$root/bench/RESULTS.md
  touch "$results"
  # Drop the old (c) section (up to the next "## " heading or the end), append the new one.
  awk '/^## \(c\)/ {skip = 1; next} /^## / {skip = 0} !skip' "$results" >"$work/results.tmp"
  sed -i -e :a -e '/^\n*$/{$d;N;ba' -e '}' "$work/results.tmp"
  { cat "$work/results.tmp"; echo; echo "$section"; } >"$results"
  echo "$section"
  exit 0
fi

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

# runs A B C: " a1/b1/c1, a2/b2/c2, ..." from the per-run times
runs() {
  local a=(${RUNS[$1]}) b=(${RUNS[$2]}) c=(${RUNS[$3]}) i out=""
  for i in "${!a[@]}"; do out+=" ${a[$i]}/${b[$i]}/${c[$i]},"; done
  echo "${out%,}"
}
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
section=$(snapshot_case "$tree")
{ echo; echo "$section"; } >>"$root/bench/RESULTS.md"
cat "$root/bench/RESULTS.md"
