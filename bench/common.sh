# Shared by the bench scripts (sourced): paths, package installation, the ouro build.
#   need CMD:PACKAGE ...   installs each Debian PACKAGE whose CMD is missing
#   build_ouro             sets $ouro: OURO_BIN=/path/to/ouro when set (no build), else a release build
#   sample_mem OUT CMD...  runs CMD, writes its wall time and memory peaks to OUT
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
work=${BENCH_WORK:-$root/bench/work}
mkdir -p "$work"

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
need() {
  local missing=() p
  for p in "$@"; do
    command -v "${p%%:*}" >/dev/null 2>&1 || missing+=("${p#*:}")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}
build_ouro() {
  if [ -n "${OURO_BIN:-}" ]; then
    ouro=$(realpath "$OURO_BIN")
    [ -x "$ouro" ] || { echo "OURO_BIN=$OURO_BIN is not an executable" >&2; exit 1; }
    return
  fi
  cargo build --release --locked -q -p ouro-cli
  ouro=$root/target/release/ouro
}
# ouro_desc: which ouro the results are of, for the reports.
ouro_desc() {
  if [ -n "${OURO_BIN:-}" ]; then
    echo "ouro binary $OURO_BIN (sha256 $(sha256sum "$ouro" | cut -c1-12), not built by the script; checkout $(git rev-parse --short HEAD))"
  else
    echo "ouro $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src cli 2>/dev/null || echo ' + uncommitted changes') (release build)"
  fi
}

# warm PATH...: reads PATH (a file or a tree) into the page cache, so that the command timed
# next reads it from memory. Needed before every timed backup, not once: borg drops each file
# it read from the page cache (posix_fadvise DONTNEED), so the tool that ran after borg read
# its whole input from disk (restic after borg: 8.2-9.3 s for /usr/share, 5.1-7.0 s
# otherwise; its system time doubled).
warm() { tar cf - "$@" 2>/dev/null | cat >/dev/null; }

# sample_mem OUT CMD...: runs CMD (with sample_mem's stdin, stdout and stderr) and writes one
# line "WALL_S VMHWM_KB RSSANON_KB RSSFILE_KB" to OUT. The memory figures are peaks over CMD's
# life, from /proc/PID/status read every 50 ms: RssAnon (heap, stacks) and RssFile (mapped
# files: for ouro, LMDB's pages, which are page cache) each at its own highest, so they need
# not add up to VmHWM. VmHWM is the kernel's high-water mark of the RSS, so its last value read
# is the peak (up to what the last 50 ms add). wait4's ru_maxrss is no substitute: it also
# counts the forked sampler before exec (~14 MB of python); it is used only for a CMD that
# ended before the first sample. The PID is followed across exec (so `env VAR=... CMD` is
# fine), not into children: ouro, borg and restic each run as one process.
# Returns CMD's exit status.
sample_mem() {
  python3 -c '
import os, subprocess, sys, time
out, cmd = sys.argv[1], sys.argv[2:]
peak = {"VmHWM:": 0, "RssAnon:": 0, "RssFile:": 0}
start = time.monotonic()
p = subprocess.Popen(cmd)
while True:
    try:
        with open(f"/proc/{p.pid}/status") as f:
            for line in f:
                k, *v = line.split()
                if k in peak:
                    peak[k] = max(peak[k], int(v[0]))
    except OSError:
        pass
    pid, status, usage = os.wait4(p.pid, os.WNOHANG)
    if pid:
        break
    time.sleep(0.05)
wall = time.monotonic() - start
p.returncode = os.waitstatus_to_exitcode(status)
hwm = peak["VmHWM:"] or usage.ru_maxrss
with open(out, "w") as f:
    print("%.2f %d %d %d" % (wall, hwm, peak["RssAnon:"], peak["RssFile:"]), file=f)
sys.exit(p.returncode if p.returncode >= 0 else 128 - p.returncode)
' "$@"
}
