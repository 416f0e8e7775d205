#!/usr/bin/env bash
# Freeing space in a cluster: a 3-node loopback cluster (RS 4+2) holds a 512 MiB file and a
# small one; the big one is removed and `ouro gc` runs on one node. Measures how long gc
# takes, how long until every node has freed its slices, and the slice bytes the nodes hold
# before and after. Writes bench/CLUSTER_GC_RESULTS.md.
#   bench/cluster_gc.sh [FILE]   FILE defaults to the input of bench/cluster.sh
source "$(dirname "$0")/common.sh"
cw=$work/cluster-gc
source "$root/bench/cluster_nodes.sh"
n=3
# held: slice bytes held by all nodes together
held() {
  local i t=0 b
  for i in $(seq 1 $n); do
    b=$("$ouro" --store "$cw/n$i" --json stats | sed -n 's/.*"stored_with_parity_bytes": \([0-9]*\).*/\1/p')
    t=$((t + b))
  done
  echo $t
}
field() { "$ouro" --store "$cw/n$1" --json cluster status | sed -n "s/.*\"$2\": \([0-9]*\).*/\1/p"; }

cluster $n
head -c $((1 << 20)) "$src" >"$cw/small"
"$ouro" --store "$cw/n1" put -q big "$input"
"$ouro" --store "$cw/n1" put -q small "$cw/small"
until [ "$(field 3 under_replicated_chunks)" = 0 ] && "$ouro" --store "$cw/n3" get small >/dev/null 2>&1; do sleep 0.5; done
before=$(held)
"$ouro" --store "$cw/n2" rm big
sleep 1
t0=$(now)
condemned=$("$ouro" --store "$cw/n2" --json gc | sed -n 's/.*"chunks_condemned": \([0-9]*\).*/\1/p')
t1=$(now)
freed() { local i; for i in $(seq 1 $n); do [ "$(field "$i" freed_chunks)" = "$condemned" ] || return 1; done; }
until freed; do sleep 0.2; done
t2=$(now)
after=$(held)
"$ouro" --store "$cw/n3" get small | cmp - "$cw/small"
stop_all
mb() { echo "$1 / 1000000" | bc -l | xargs printf '%.1f'; }
{
  echo "# Cluster gc benchmark"
  echo
  echo "$(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, loopback; $n nodes, RS 4+2; removed: $(basename "$input"), $size bytes ($condemned chunks); ouro $(git rev-parse --short HEAD). Reproduce: \`bench/cluster_gc.sh\`."
  echo
  echo "| measure | value |"
  echo "|---|---|"
  echo "| \`ouro gc\` on one node (condemns) | $(secs "$t0" "$t1") s |"
  echo "| from gc's end until every node freed its slices | $(secs "$t1" "$t2") s |"
  echo "| slice bytes held by the nodes before rm | $(mb "$before") MB |"
  echo "| after | $(mb "$after") MB |"
  echo
  echo "Nodes free in rounds every 2 s: a round waits for every member's acknowledgement and a pull from every member that started after it."
} >"$root/bench/CLUSTER_GC_RESULTS.md"
cat "$root/bench/CLUSTER_GC_RESULTS.md"
