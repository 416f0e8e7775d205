#!/usr/bin/env bash
# Side-by-side benchmark of ouro, borg and restic on the same input, in one run.
# Installs the peers (Debian packages) when missing. Writes bench/RESULTS.md.
#   [REPS=3] bench/compare.sh [FILE [TREE]]
#     FILE defaults to a tar of the Rust toolchain's lib/ (~540 MB of real binaries)
#     TREE defaults to /usr/share (tens of thousands of files)
#     Sections (a) one file, (b) a tree, (c) snapshots: put -r / get -r against restic.
#   [REPS=3] [RESTORE_DIR=/dev/shm] bench/compare.sh snapshots [TREE]
#     Only (c): replaces that section of bench/RESULTS.md, keeps the others.
#   [REPS=3] [SMALL_SRC=git:URL|pypi:NAME|dir:PATH] [SMALL_RELEASES='R1 R2 ...'] [REL_RSYNC=OPTS] bench/compare.sh small [TREE]
#     Only (d) small files: several releases of a source tree (by default curl's git tags, or
#     Django's sdists on PyPI when GitHub is out of reach) backed up in turn into one store per
#     tool, then a first backup of TREE; ouro against borg and restic, with peak memory.
#     Replaces that section of bench/RESULTS.md, keeps the others (the full run keeps it too).
#   OURO_BIN=/path/to/ouro: benchmark that binary instead of building one (common.sh).
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
# restore into an empty directory under $RESTORE_DIR (default /tmp; /dev/shm takes this VM's
# disk, whose write-back slows both tools' restores 3-10x from one repetition to the next, out
# of the measure), and how exact the restore is: the lines of
# `rsync -n -aHAX --numeric-ids -c --itemize-changes --delete TREE/ RESTORED/`.
# Prints a markdown section on stdout; progress on stderr.
snapshot_case() {
  local tree=$1 i t secs rss before
  local sw=$work/snap rt
  rt=$(mktemp -d "${RESTORE_DIR:-/tmp}/ouro-bench-restore.XXXXXX")
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
  echo "$(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores ($(lscpu | sed -n 's/Model name: *//p' | head -1)); $(ouro_desc), 4+2, zstd 3; $(restic version | cut -d' ' -f1-2)."
  echo "Reproduce: \`bench/compare.sh snapshots $tree\` (as root, so that both restore owners). Medians of $reps repetitions; in each"
  echo "step the two tools run back to back, and who goes first alternates. Restores go into an empty directory under ${RESTORE_DIR:-/tmp}."
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

# (d) Small files: where the release series comes from. SMALL_SRC is one of
#   git:URL|PATH  a git repository (a URL is cloned once, bare, into $work/small-src); the
#                 releases are tags or revisions, exported with `git archive`
#   pypi:NAME     a project's source distributions on PyPI (`pip download --no-binary NAME`)
#   dir:PATH      a directory with one subdirectory per release
# and SMALL_RELEASES the tags, versions or subdirectories, oldest first (defaults below).
# Unset, SMALL_SRC is curl's repository on GitHub; when that is out of reach (a machine whose
# only network is the package registries), Django's sdists on PyPI; when PyPI is too, this
# checkout's own history. Releases are extracted once into $work/small-src/NAME/RELEASE (git:
# NAME/COMMIT).
# Sets rel_names, rel_dirs (arrays, oldest first) and src_desc (for the report).
small_source() {
  local src=${SMALL_SRC:-} rels=${SMALL_RELEASES:-} cache=$work/small-src name r d g
  local curl=https://github.com/curl/curl note=""
  mkdir -p "$cache"
  if [ -z "$src" ]; then
    if timeout 30 git ls-remote "$curl" HEAD >/dev/null 2>&1; then
      src=git:$curl
    elif timeout 60 python3 -m pip index versions django >/dev/null 2>&1; then
      src=pypi:django note="GitHub is out of reach from this machine (\`git ls-remote $curl\` failed), so "
    else
      src=git:$root note="neither GitHub nor PyPI is reachable from this machine, so "
    fi
  fi
  rel_names=(); rel_dirs=()
  case $src in
    git:*)
      local url=${src#git:}
      if [ -d "$url" ]; then
        g=$(git -C "$url" rev-parse --absolute-git-dir); name=$(basename "$(realpath "$url")")
      else
        name=$(basename "${url%.git}"); g=$cache/$name.git
        [ -d "$g" ] || git clone -q --bare "$url" "$g"
      fi
      if [ -z "$rels" ]; then
        if [ "$url" = "$curl" ]; then
          rels="curl-8_6_0 curl-8_7_1 curl-8_8_0 curl-8_9_1 curl-8_10_1 curl-8_11_0"
        else # 5 commits evenly spaced along the first-parent history, as short hashes
          rels=$(git --git-dir="$g" rev-list --first-parent --reverse HEAD |
            awk '{c[NR] = $1} END {for (i = 1; i <= 5; i++) print substr(c[int(1 + (NR - 1) * (i - 1) / 4)], 1, 10)}')
        fi
      fi
      for r in $rels; do
        git --git-dir="$g" rev-parse -q --verify "$r^{commit}" >/dev/null || git --git-dir="$g" fetch -q --tags "$url"
        d=$cache/$name/$(git --git-dir="$g" rev-parse "$r^{commit}") # by commit: HEAD~1 moves
        if [ ! -d "$d" ]; then
          rm -rf "$d.tmp"; mkdir -p "$d.tmp"
          git --git-dir="$g" archive "$r" | tar xf - -C "$d.tmp"
          mv "$d.tmp" "$d"
        fi
        rel_names+=("$r"); rel_dirs+=("$d")
      done
      src_desc="${note}the git repository $url, tags or revisions exported with \`git archive\`" ;;
    pypi:*)
      name=${src#pypi:}
      if [ -z "$rels" ]; then
        [ "$name" = django ] || { echo "SMALL_RELEASES is needed for $src" >&2; return 1; }
        rels="4.1 4.2 5.0 5.1 5.2" # feature releases, 2022-08 to 2025-04
      fi
      for r in $rels; do
        d=$cache/$name/$r
        if [ ! -d "$d" ]; then
          rm -rf "$cache/dl" "$d.tmp"; mkdir -p "$d.tmp"
          python3 -m pip download -q --no-deps --no-binary "$name" -d "$cache/dl" "$name==$r" >&2
          tar xf "$cache"/dl/* -C "$d.tmp" --strip-components=1
          mv "$d.tmp" "$d"
        fi
        rel_names+=("$r"); rel_dirs+=("$d")
      done
      src_desc="${note}$name's source distributions from PyPI (\`pip download --no-binary $name\`, extracted)" ;;
    dir:*)
      local base=${src#dir:}
      [ -n "$rels" ] || rels=$(find "$base" -mindepth 1 -maxdepth 1 -type d -printf '%f\n' | sort -V)
      for r in $rels; do rel_names+=("$r"); rel_dirs+=("$base/$r"); done
      src_desc="the subdirectories of $base" ;;
    *) echo "SMALL_SRC=$src: expected git:URL|PATH, pypi:NAME or dir:PATH" >&2; return 1 ;;
  esac
  [ ${#rel_dirs[@]} -ge 1 ] || { echo "no releases in $src" >&2; return 1; }
  small_src=$src small_rels=$(echo $rels)
}

# (d) Small files: ouro put -r against borg create -C zstd,3 and restic backup (defaults) on
# many small files, the three tools taking turns in every step:
#   1. the releases of small_source backed up in turn, one store (repository) per tool: each
#      release is copied with `rsync -a $REL_RSYNC --delete` into $sw/src-tree, the one path all
#      three back up (ouro: snapshots under prefix src; borg: one archive per release; restic: one
#      snapshot per release, each the parent of the next). By default the copy is the user's own
#      tree (REL_RSYNC='--no-owner --no-group --chmod=go-w': owned by whoever runs the bench, no
#      group or world write): extracted as root, PyPI's sdists keep their packagers' owners and
#      umasks (uid 501, 1000 or 1001; modes 644 or 664), which change from one release to the
#      next as no user's own checkout does, and ouro records such a change as a new version of
#      the file (REL_RSYNC= keeps them). Reports each backup's time and the total,
#      the store directory's bytes after the last (du -sb; for ouro also without parity, i.e.
#      less stored_with_parity_bytes - stored_bytes of `ouro stats`), and peak memory;
#   2. a first backup of TREE into fresh stores: time, bytes, peak memory.
# Memory comes from sample_mem (common.sh): VmHWM, RssAnon and RssFile at their peaks.
# Prints a markdown section on stdout; progress on stderr.
small_case() {
  local tree=$1 sw=$work/small i k t n a b c rel_rsync=${REL_RSYNC---no-owner --no-group --chmod=go-w}
  small_source
  n=${#rel_dirs[@]}
  rm -rf "$sw"; mkdir -p "$sw"
  export BORG_PASSPHRASE=bench RESTIC_PASSWORD=bench BORG_RELOCATED_REPO_ACCESS_IS_OK=yes
  # borg's and restic's caches (files cache, index) go beside the stores, fresh for each store.
  export BORG_BASE_DIR=$sw/borg-home RESTIC_CACHE_DIR=$sw/restic-cache
  local -A D P # D[KEY]: " value" per repetition; P[KEY]: per-repetition running peaks and sums
  local secs hwm anon file
  # timed CMD...: wall seconds and memory peaks (KB) of CMD into secs, hwm, anon, file.
  timed() {
    # Let the disk settle: freeing the previous step's files (ext4 with discard) slows the
    # first writes that follow by up to 10x on this kind of VM.
    sync; sleep 2
    sample_mem "$sw/mem.txt" "$@" >/dev/null 2>"$sw/err.txt" || { cat "$sw/err.txt" >&2; return 1; }
    read -r secs hwm anon file <"$sw/mem.txt"
  }
  # init_store TOOL STORE: a fresh, empty store.
  init_store() {
    rm -rf "$2"
    case $1 in
      ouro) OURO_STORE=$2 OURO_IDENTITY=$sw/ouro-id.txt "$ouro" init -q ;;
      borg) borg init -e repokey-blake2 "$2" 2>/dev/null ;;
      restic) restic init -q -r "$2" ;;
    esac
  }
  # backup TOOL STORE NAME DIR: one timed backup of DIR into STORE (borg: archive NAME),
  # read from the page cache (see warm).
  backup() {
    warm "$4"
    case $1 in
      ouro) timed env OURO_STORE="$2" OURO_IDENTITY="$sw/ouro-id.txt" "$ouro" put -r "$4" src -q ;;
      borg) timed borg create -C zstd,3 "$2::$3" "$4" ;;
      restic) timed restic -q -r "$2" backup "$4" ;;
    esac
    printf '%-6s %-22s %7.2f s  VmHWM %5d MB  RssAnon %5d MB  RssFile %5d MB\n' \
      "$1" "$3" "$secs" $((hwm / 1024)) $((anon / 1024)) $((file / 1024)) >&2
  }
  # compact STORE: a timed `ouro gc --compact` of an ouro store (its free pages returned to
  # the filesystem: what a user does after forget and gc; borg and restic have nothing to free).
  compact() {
    timed env OURO_STORE="$1" OURO_IDENTITY="$sw/ouro-id.txt" "$ouro" gc --compact=0 -q
  }
  # order I: the three tools, rotated by I, so that each goes first as often as the others.
  order() { local t=(ouro borg restic); echo "${t[$(($1 % 3))]} ${t[$((($1 + 1) % 3))]} ${t[$((($1 + 2) % 3))]}"; }
  # peak KEY VALUE: P[KEY] = max(P[KEY], VALUE)
  peak() { if [ "$2" -gt "${P[$1]:-0}" ]; then P[$1]=$2; fi; }
  # ouro_stats STORE: "stored_bytes stored_with_parity_bytes file_bytes" of `ouro stats --json`
  ouro_stats() {
    OURO_STORE=$1 OURO_IDENTITY=$sw/ouro-id.txt "$ouro" stats --json |
      python3 -c 'import json, sys; j = json.load(sys.stdin); print(j["stored_bytes"], j["stored_with_parity_bytes"], j["file_bytes"])'
  }
  # dir_stats DIR: "FILES SMALL BYTES": regular files, those under 16 KiB, their bytes.
  dir_stats() { find "$1" -type f -printf '%s\n' | awk '{n++; b += $1; if ($1 < 16384) s++} END {print n + 0, s + 0, b + 0}'; }

  local rel_info="" tree_files tree_small tree_bytes
  for k in "${!rel_dirs[@]}"; do
    read -r a b c < <(dir_stats "${rel_dirs[$k]}")
    rel_info+=" ${rel_names[$k]}: $a files ($((100 * b / a))% under 16 KiB), $(mb "$c") MB;"
  done
  read -r tree_files tree_small tree_bytes < <(dir_stats "$tree")
  echo "(d) small files: $n releases of $small_src:$rel_info then $tree" >&2

  for i in $(seq "$reps"); do
    # 1. The releases, in turn, into one store per tool.
    P=()
    for t in ouro borg restic; do init_store $t "$sw/$t-rel"; done
    rm -rf "$sw/src-tree"
    for k in "${!rel_dirs[@]}"; do
      rsync -a $rel_rsync --delete "${rel_dirs[$k]}/" "$sw/src-tree/"
      for t in $(order $((i + k))); do
        backup $t "$sw/$t-rel" "${rel_names[$k]}" "$sw/src-tree"
        D[${t}_r$k]+=" $secs"
        P[${t}_total]=$(awk -v a="${P[${t}_total]:-0}" -v b="$secs" 'BEGIN {printf "%.2f", a + b}')
        peak ${t}_hwm "$hwm"; peak ${t}_anon "$anon"; peak ${t}_file "$file"
      done
    done
    for t in ouro borg restic; do
      for a in total hwm anon file; do D[${t}_$a]+=" ${P[${t}_$a]}"; done
      D[${t}_bytes]+=" $(du -sb "$sw/$t-rel" | cut -f1)"
    done
    read -r a b c < <(ouro_stats "$sw/ouro-rel")
    D[ouro_stored]+=" $a"; D[ouro_with_parity]+=" $b"; D[ouro_file_bytes]+=" $c"
    D[ouro_noparity]+=" $(( ${D[ouro_bytes]##* } - (b - a) ))"
    compact "$sw/ouro-rel"; D[ouro_compact]+=" $secs"; D[ouro_compacted]+=" $(du -sb "$sw/ouro-rel" | cut -f1)"
    # 2. A first backup of TREE into fresh stores (read from the page cache by every tool).
    for t in $(order "$i"); do
      init_store $t "$sw/$t-tree"
      backup $t "$sw/$t-tree" "$(basename "$tree")" "$tree"
      D[${t}_tree]+=" $secs"; D[${t}_tree_hwm]+=" $hwm"; D[${t}_tree_anon]+=" $anon"; D[${t}_tree_file]+=" $file"
      D[${t}_tree_bytes]+=" $(du -sb "$sw/$t-tree" | cut -f1)"
    done
    read -r a b c < <(ouro_stats "$sw/ouro-tree")
    D[ouro_tree_stored]+=" $a"; D[ouro_tree_with_parity]+=" $b"; D[ouro_tree_file_bytes]+=" $c"
    D[ouro_tree_noparity]+=" $(( ${D[ouro_tree_bytes]##* } - (b - a) ))"
    compact "$sw/ouro-tree"; D[ouro_tree_compact]+=" $secs"; D[ouro_tree_compacted]+=" $(du -sb "$sw/ouro-tree" | cut -f1)"
    rm -rf "$sw"/*-tree # a GB of stores
  done

  local -A M
  for a in "${!D[@]}"; do M[$a]=$(median ${D[$a]}); done
  local reserve=0
  [ -f "$sw/ouro-rel/reserve" ] && reserve=$(stat -c %s "$sw/ouro-rel/reserve")
  # runs3 KEY: " ouro/borg/restic, ..." of KEY's per-repetition figures (KEY without the tool)
  runs3() {
    local o=(${D[ouro_$1]}) b=(${D[borg_$1]}) s=(${D[restic_$1]}) j out=""
    for j in "${!o[@]}"; do out+=" ${o[$j]}/${b[$j]}/${s[$j]},"; done
    echo "${out%,}"
  }
  # row LABEL KEY [FMT]: a table row of KEY's medians for the three tools and ouro's ratios.
  row() {
    local o=${M[ouro_$2]} b=${M[borg_$2]} s=${M[restic_$2]} f=${3:-}
    if [ "$f" = mb ]; then
      echo "| $1 | $(mb "$o") | $(mb "$b") | $(mb "$s") | $(r "$o" "$b")x | $(r "$o" "$s")x |"
    else
      echo "| $1 | $o | $b | $s | $(r "$o" "$b")x | $(r "$o" "$s")x |"
    fi
  }
  # mem_rows SUFFIX: the memory rows, in MB (KB / 1024).
  mem_rows() {
    local x
    for x in hwm anon file; do
      local o=${M[ouro_$1$x]} b=${M[borg_$1$x]} s=${M[restic_$1$x]} label
      case $x in hwm) label="peak RSS (VmHWM) MB" ;; anon) label="peak RssAnon MB" ;; file) label="peak RssFile MB" ;; esac
      echo "| $label | $((o / 1024)) | $((b / 1024)) | $((s / 1024)) | $(r "$o" "$b")x | $(r "$o" "$s")x |"
    done
  }
  # vs_min SUFFIX X: "ouro A MB vs B MB (tool) = Rx" for ouro against the lower of borg and restic.
  vs_min() {
    local o=${M[ouro_$1$2]} b=${M[borg_$1$2]} s=${M[restic_$1$2]} m tool
    if [ "$b" -le "$s" ]; then m=$b tool=borg; else m=$s tool=restic; fi
    echo "$((o / 1024)) MB vs $((m / 1024)) MB ($tool): $(r "$o" "$m")x"
  }

  echo "## (d) Small files: $n releases of a source tree, then a first backup of $tree"
  echo
  echo "$(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores ($(lscpu | sed -n 's/Model name: *//p' | head -1)); $(ouro_desc), 4+2, zstd 3;"
  echo "$(borg --version) (\`borg create -C zstd,3\`, repokey-blake2); $(restic version | cut -d' ' -f1-2) (defaults)."
  echo "Reproduce: \`REPS=$reps SMALL_SRC=$small_src SMALL_RELEASES='$small_rels' REL_RSYNC='$rel_rsync' bench/compare.sh small $tree\`."
  echo "Medians of $reps repetition(s) on fresh stores; in each step the three tools run back to back, the first one rotating."
  echo "Memory: /proc/PID/status sampled every 50 ms; RssAnon and RssFile each at its own peak (RssFile of ouro is mostly"
  echo "LMDB's mapped pages, page cache that the kernel can reclaim); for the releases, the highest of the $n backups."
  echo
  echo "### 1. Releases, backed up in turn into one store per tool"
  echo
  echo "Source: $src_desc."
  echo "Each release is copied with \`rsync -a $rel_rsync --delete\` into one directory that all three back up (ouro: \`put -r DIR src\`,"
  echo "a snapshot each; borg: an archive each; restic: a snapshot each, the previous one as parent)."
  echo "Releases, oldest first:${rel_info%;}."
  echo
  echo "| | ouro | borg | restic | ouro / borg | ouro / restic |"
  echo "|---|---|---|---|---|---|"
  for k in "${!rel_dirs[@]}"; do row "backup $((k + 1)): ${rel_names[$k]} s" "r$k"; done
  row "all $n backups s" total
  row "store directory after all $n MB (du -sb; ouro: parity included)" bytes mb
  echo "| ouro, parity left out MB | $(mb "${M[ouro_noparity]}") | | | $(r "${M[ouro_noparity]}" "${M[borg_bytes]}")x | $(r "${M[ouro_noparity]}" "${M[restic_bytes]}")x |"
  echo "| ouro after \`gc --compact\` MB ($(printf %.2f "${M[ouro_compact]}") s; parity included) | $(mb "${M[ouro_compacted]}") | | | $(r "${M[ouro_compacted]}" "${M[borg_bytes]}")x | $(r "${M[ouro_compacted]}" "${M[restic_bytes]}")x |"
  mem_rows ""
  echo
  echo "ouro stats after the $n releases: stored_bytes ${M[ouro_stored]}, stored_with_parity_bytes ${M[ouro_with_parity]},"
  echo "file_bytes ${M[ouro_file_bytes]}; the store directory ${M[ouro_bytes]} bytes (its reserve file: $reserve bytes)."
  echo "Each repetition, ouro / borg / restic: all $n backups s:$(runs3 total); store bytes:$(runs3 bytes)."
  echo
  echo "### 2. First backup of $tree ($tree_files files, $((100 * tree_small / tree_files))% under 16 KiB, $(mb "$tree_bytes") MB)"
  echo
  echo "| | ouro | borg | restic | ouro / borg | ouro / restic |"
  echo "|---|---|---|---|---|---|"
  row "first backup s" tree
  row "store directory MB (du -sb; ouro: parity included)" tree_bytes mb
  echo "| ouro, parity left out MB | $(mb "${M[ouro_tree_noparity]}") | | | $(r "${M[ouro_tree_noparity]}" "${M[borg_tree_bytes]}")x | $(r "${M[ouro_tree_noparity]}" "${M[restic_tree_bytes]}")x |"
  echo "| ouro after \`gc --compact\` MB ($(printf %.2f "${M[ouro_tree_compact]}") s; parity included) | $(mb "${M[ouro_tree_compacted]}") | | | $(r "${M[ouro_tree_compacted]}" "${M[borg_tree_bytes]}")x | $(r "${M[ouro_tree_compacted]}" "${M[restic_tree_bytes]}")x |"
  mem_rows tree_
  echo
  echo "ouro stats: stored_bytes ${M[ouro_tree_stored]}, stored_with_parity_bytes ${M[ouro_tree_with_parity]}, file_bytes ${M[ouro_tree_file_bytes]}."
  echo "Each repetition, ouro / borg / restic: first backup s:$(runs3 tree); store bytes:$(runs3 tree_bytes)."
  echo
  echo "### Ratios (lower is better for ouro)"
  echo
  echo "- store bytes, ouro / borg: releases $(r "${M[ouro_bytes]}" "${M[borg_bytes]}")x parity included, $(r "${M[ouro_noparity]}" "${M[borg_bytes]}")x parity left out;"
  echo "  $tree $(r "${M[ouro_tree_bytes]}" "${M[borg_tree_bytes]}")x parity included, $(r "${M[ouro_tree_noparity]}" "${M[borg_tree_bytes]}")x parity left out;"
  echo "  after \`ouro gc --compact\`: releases $(r "${M[ouro_compacted]}" "${M[borg_bytes]}")x, $tree $(r "${M[ouro_tree_compacted]}" "${M[borg_tree_bytes]}")x (parity included)"
  echo "- time, ouro / restic: all $n releases $(r "${M[ouro_total]}" "${M[restic_total]}")x, first backup of $tree $(r "${M[ouro_tree]}" "${M[restic_tree]}")x"
  echo "  (ouro / borg: $(r "${M[ouro_total]}" "${M[borg_total]}")x and $(r "${M[ouro_tree]}" "${M[borg_tree]}")x)"
  echo "- peak RSS (VmHWM), ouro vs the lower of borg and restic: releases $(vs_min "" hwm); $tree $(vs_min tree_ hwm)"
  echo "- peak RssAnon, the same: releases $(vs_min "" anon); $tree $(vs_min tree_ anon)"
}

# put_section LETTER FILE: replaces section "## (LETTER) ..." of bench/RESULTS.md (its heading
# up to the next "## " heading or the end) by FILE's text; without one, inserts it before the
# first section of a later letter, or at the end. Keeps everything else.
put_section() {
  local results=$root/bench/RESULTS.md
  touch "$results"
  awk -v l="$1" -v new="$2" '
    function emit(line) { if (!done) { while ((getline line < new) > 0) print line; print ""; done = 1 } }
    /^## \([a-z]\)/ { x = substr($0, 5, 1); skip = 0; if (x == l) { emit(); skip = 1; next }; if (x > l) emit() }
    /^## / && !/^## \([a-z]\)/ { skip = 0 }
    !skip { print }
    END { if (!done) { print ""; emit() } }' "$results" >"$work/results.tmp"
  # No blank lines at the end.
  sed -i -e :a -e '/^\n*$/{$d;N;ba' -e '}' "$work/results.tmp"
  mv "$work/results.tmp" "$results"
}

if [ "${1:-}" = snapshots ]; then
  snapshot_case "${2:-/usr/share}" >"$work/section.md"
  put_section c "$work/section.md"
  cat "$work/section.md"
  exit 0
fi
if [ "${1:-}" = small ]; then
  small_case "${2:-/usr/share}" >"$work/section.md"
  put_section d "$work/section.md"
  cat "$work/section.md"
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
  warm "$input"; run "ouro put" "$ouro" put bench "$input"; RUNS[ouro_put]+=" $secs"; R[ouro_put]=$rss
  warm "$input"; run "borg create" borg create -C zstd,3 "$work/borg::a" "$input"; RUNS[borg_put]+=" $secs"; R[borg_put]=$rss
  warm "$input"; run "restic backup" restic -q -r "$work/restic" backup "$input"; RUNS[restic_put]+=" $secs"; R[restic_put]=$rss
done
for t in ouro_put borg_put restic_put; do T[$t]=$(median ${RUNS[$t]}); done
export GIT_AUTHOR_NAME=bench GIT_AUTHOR_EMAIL=b@b GIT_COMMITTER_NAME=bench GIT_COMMITTER_EMAIL=b@b
rm -rf "$work/git-a" && git init -q "$work/git-a"
warm "$input"
# -C: a pathspec is relative to the current directory, which may lie inside the input's
# directory (bench/compare.sh run from /work/main on /work/rustlib.tar).
run "git add+commit" sh -c "git -C '$(dirname "$input")' --git-dir='$work/git-a/.git' --work-tree='$(dirname "$input")' add '$(basename "$input")' && git -C '$(dirname "$input")' --git-dir='$work/git-a/.git' --work-tree='$(dirname "$input")' commit -qm a"; T[git_put]=$secs; R[git_put]=$rss
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
export OURO_STORE=$work/ouro-tree
for i in $(seq "$reps"); do
  rm -rf "$work/ouro-tree" "$work/borg-tree" "$work/restic-tree"
  "$ouro" init -q
  borg init -e repokey-blake2 "$work/borg-tree" 2>/dev/null
  restic init -q -r "$work/restic-tree"
  warm "$tree"; run "ouro put -r" "$ouro" put -r "$tree" share -q; RUNS[ouro_tree]+=" $secs"; R[ouro_tree]=$rss
  warm "$tree"; run "borg create -r" borg create -C zstd,3 "$work/borg-tree::a" "$tree"; RUNS[borg_tree]+=" $secs"; R[borg_tree]=$rss
  warm "$tree"; run "restic backup -r" restic -q -r "$work/restic-tree" backup "$tree"; RUNS[restic_tree]+=" $secs"; R[restic_tree]=$rss
done
for t in ouro_tree borg_tree restic_tree; do T[$t]=$(median ${RUNS[$t]}); done
warm "$tree"; run "ouro put -r (again)" "$ouro" put -r "$tree" share -q; T[ouro_tree2]=$secs
warm "$tree"; run "borg (again)" borg create -C zstd,3 "$work/borg-tree::b" "$tree"; T[borg_tree2]=$secs
warm "$tree"; run "restic (again)" restic -q -r "$work/restic-tree" backup "$tree"; T[restic_tree2]=$secs
rm -rf "$work/git-tree"
git init -q "$work/git-tree"
warm "$tree"
run "git add -A+commit" sh -c "git --git-dir='$work/git-tree/.git' --work-tree='$tree' add -A && git --git-dir='$work/git-tree/.git' --work-tree='$tree' commit -qm a"; T[git_tree]=$secs; R[git_tree]=$rss
run "git (again)" sh -c "git --git-dir='$work/git-tree/.git' --work-tree='$tree' add -A && git --git-dir='$work/git-tree/.git' --work-tree='$tree' commit -qm b --allow-empty"; T[git_tree2]=$secs
ouro_tree_stored=$("$ouro" stats --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["stored_bytes"])')
ouro_tree_file=$(du -sb "$work/ouro-tree" | cut -f1)
borg_tree_stored=$(du -sb "$work/borg-tree" | cut -f1)
restic_tree_stored=$(du -sb "$work/restic-tree" | cut -f1)
git_tree_stored=$(du -sb "$work/git-tree/.git" | cut -f1)
export OURO_STORE=$work/ouro-store

# The full run rewrites bench/RESULTS.md: keep its (d) section, which only `small` writes.
awk '/^## \(d\)/ {keep = 1} /^## / && !/^## \(d\)/ {keep = 0} keep' "$root/bench/RESULTS.md" >"$work/section-d.md" 2>/dev/null || true
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
  echo "$(ouro_desc) (4+2, zstd 3, 1 MiB chunks); $(borg --version); $(restic version | cut -d' ' -f1-2). Reproduce: \`bench/compare.sh\`."
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
if [ -s "$work/section-d.md" ]; then put_section d "$work/section-d.md"; fi
cat "$root/bench/RESULTS.md"
