#!/usr/bin/env bash
# Put and get throughput of a 512 MiB file through 3-node and 6-node loopback clusters
# (RS 4+2), against the embedded store, in one run. Writes bench/CLUSTER_RESULTS.md.
#   bench/cluster.sh [FILE]   FILE defaults to the first 512 MiB of the tar of compare.sh
# A cluster put returns once every slice is on the node placement names (the node's Flush);
# gets run on the node that wrote (remote slices through its node) and on another node.
source "$(dirname "$0")/common.sh"
source "$root/bench/cluster_nodes.sh"
mbps() { echo "$size / $1 / 1000000" | bc -l | xargs printf '%.0f'; }
# timed LABEL CMD...: seconds of one run, after the disk settles
timed() { sync; sleep 2; local t0 t1; t0=$(now); "${@:2}" >/dev/null; t1=$(now); secs "$t0" "$t1"; }
# median3 LABEL CMD...: the median of three timed runs (reads can repeat; this machine is noisy)
median3() { local a b c; a=$(timed "$@"); b=$(timed "$@"); c=$(timed "$@"); printf '%s\n' "$a" "$b" "$c" | sort -n | sed -n 2p; }

declare -A put get_w get_o
# embedded store
rm -rf "$cw"; mkdir -p "$cw"
"$ouro" --store "$cw/e" init -q
put[e]=$(timed put "$ouro" --store "$cw/e" put -q big "$input")
get_w[e]=$(median3 get "$ouro" --store "$cw/e" get big)
get_o[e]=-
for n in 3 6; do
  echo "cluster of $n" >&2
  cluster "$n"
  put[$n]=$(timed put "$ouro" --store "$cw/n1" put -q big "$input")
  sleep 1
  get_w[$n]=$(median3 get "$ouro" --store "$cw/n1" get big)
  get_o[$n]=$(median3 get "$ouro" --store "$cw/n2" get big)
  "$ouro" --store "$cw/n2" get big | cmp - "$input"
  stop_all
done

ratio() { echo "$2 / $1" | bc -l | xargs printf '%.2f'; }
{
  echo "# Cluster benchmark"
  echo
  echo "$(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, loopback; input: $(basename "$input"), $size bytes; ouro $(git rev-parse --short HEAD), RS 4+2. Reproduce: \`bench/cluster.sh\`."
  echo
  echo "| setup | put s (MB/s) | get on the writing node s (MB/s) | get on another node s (MB/s) | put / get throughput vs embedded |"
  echo "|---|---|---|---|---|"
  echo "| embedded store | ${put[e]} ($(mbps "${put[e]}")) | ${get_w[e]} ($(mbps "${get_w[e]}")) | - | 1 / 1 |"
  for n in 3 6; do
    echo "| $n nodes | ${put[$n]} ($(mbps "${put[$n]}")) | ${get_w[$n]} ($(mbps "${get_w[$n]}")) | ${get_o[$n]} ($(mbps "${get_o[$n]}")) | $(ratio "${put[$n]}" "${put[e]}") / $(ratio "${get_o[$n]}" "${get_w[e]}") |"
  done
  echo
  echo "Gets: median of three runs. All nodes run on this one machine, so a cluster put also pays for the receiving nodes' writes and fsyncs; target: >= 0.5x the embedded store's throughput."
} >"$root/bench/CLUSTER_RESULTS.md"
cat "$root/bench/CLUSTER_RESULTS.md"
