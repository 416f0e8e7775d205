# Shared by the bench scripts (sourced): paths, package installation, the ouro build.
#   need CMD:PACKAGE ...   installs each Debian PACKAGE whose CMD is missing
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
  cargo build --release --locked -q -p ouro-cli
  ouro=$root/target/release/ouro
}
