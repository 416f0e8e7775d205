# Shared by the cluster bench scripts (sourced after common.sh, with the script's arguments):
# the ouro build, the input (FILE or the first 512 MiB of compare.sh's tar), a loopback cluster of N nodes.
# INIT_ARGS: extra options of the first node's `ouro init` (e.g. --chunk-size 2M).
need bc:bc
build_ouro
src=$work/rustlib.tar
[ -f "$src" ] || tar cf "$src" -C "$(rustc --print sysroot)" lib
input=${1:-$work/cluster-input.bin}
[ -f "$input" ] || head -c $((512 << 20)) "$src" >"$input"
size=$(stat -c %s "$input")
cw=${cw:-$work/cluster}
export OURO_IDENTITY=$cw/id.txt
pids=()
stop_all() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; pids=(); }
trap stop_all EXIT
now() { date +%s.%N; }
secs() { echo "$2 - $1" | bc -l | xargs printf '%.3f'; }
alive() { "$ouro" --store "$1" --json cluster status 2>/dev/null | grep -c '"state": "alive"' || true; }
# cluster N: starts N nodes under $cw/nN, ports 27001..
cluster() {
  local n=$1 i tok
  stop_all
  rm -rf "$cw"; mkdir -p "$cw"
  "$ouro" --store "$cw/n1" init -q ${INIT_ARGS:-}
  "$ouro" --store "$cw/n1" cluster init -q
  "$ouro" --store "$cw/n1" node run --listen 127.0.0.1:27001 2>"$cw/n1.log" & pids+=($!)
  until [ "$(alive "$cw/n1")" -ge 1 ]; do sleep 0.2; done
  for i in $(seq 2 "$n"); do
    tok=$("$ouro" --store "$cw/n1" cluster invite -q | tail -1)
    "$ouro" --store "$cw/n$i" node run --listen "127.0.0.1:2700$i" --join "$tok" 2>"$cw/n$i.log" & pids+=($!)
  done
  until [ "$(alive "$cw/n1")" -ge "$n" ] && [ "$(alive "$cw/n$n")" -ge "$n" ]; do sleep 0.3; done
}
