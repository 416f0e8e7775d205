#!/usr/bin/env bash
# Where the CPU goes in a cluster put and get: wall time and CPU seconds of the command and of
# all the nodes together, for the embedded store and a 6-node loopback cluster (RS 4+2), on
# the input of bench/cluster.sh. Shows how much of the machine's 2 cores a cluster transfer
# needs beyond what the embedded store spends. Writes bench/CLUSTER_CPU_RESULTS.md.
#   [NODES=6] [INIT_ARGS="--chunk-size 2M"] bench/cluster_cpu.sh [FILE]
source "$(dirname "$0")/common.sh"
source "$root/bench/cluster_nodes.sh"
n=${NODES:-6}
# CPU seconds (user + system) of processes PIDS so far.
cpu_of() { local p t=0; for p in "$@"; do t=$(echo "$t + $(awk '{print ($14 + $15) / 100}' "/proc/$p/stat")" | bc -l); done; echo "$t"; }
# measure LABEL CMD...: one line "wall command_cpu nodes_cpu", after the disk settles.
measure() {
  sync; sleep 2
  local n0 t0 t1 n1 out
  n0=$(cpu_of "${pids[@]}")
  out=$( { /usr/bin/time -f "%e %U %S" "${@:2}" >/dev/null; } 2>&1 | tail -1)
  n1=$(cpu_of "${pids[@]}")
  read -r wall user sys <<<"$out"
  printf '%s %.2f %.2f %.2f\n' "$1" "$wall" "$(echo "$user + $sys" | bc -l)" "$(echo "$n1 - $n0" | bc -l)"
}
cluster "$n"
rm -rf "$cw/e"; "$ouro" --store "$cw/e" init -q ${INIT_ARGS:-}
rows=()
rows+=("$(measure "embedded put" "$ouro" --store "$cw/e" put -q big "$input")")
rows+=("$(measure "embedded get" "$ouro" --store "$cw/e" get big)")
rows+=("$(measure "$n-node put" "$ouro" --store "$cw/n1" put -q big "$input")")
sleep 2
rows+=("$(measure "$n-node get, another node" "$ouro" --store "$cw/n2" get big)")
stop_all
{
  echo "# Cluster CPU benchmark"
  echo
  echo "$(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, loopback; input: $(basename "$input"), $size bytes; ouro $(git rev-parse --short HEAD), RS 4+2. Reproduce: \`bench/cluster_cpu.sh\`."
  echo
  echo "| transfer | wall s | CPU s of the command | CPU s of all $n nodes | CPU s in all |"
  echo "|---|---|---|---|---|"
  for r in "${rows[@]}"; do
    label=$(echo "$r" | awk '{NF-=3; print}')
    set -- $r; shift $(( $# - 3 ))
    echo "| $label | $1 | $2 | $3 | $(echo "$2 + $3" | bc -l | xargs printf '%.2f') |"
  done
  echo
  echo "All processes share this machine's $(nproc) cores: a cluster transfer that needs more CPU seconds in all than the embedded one can only be slower, by about that ratio, when the cores are saturated."
} | tee "$root/bench/CLUSTER_CPU_RESULTS.md"
