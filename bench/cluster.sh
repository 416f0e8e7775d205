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
timed() {
  sync; sleep 2; local t0 t1; t0=$(now)
  "${@:2}" >/dev/null || { echo "$1 failed: ${*:2}" >&2; exit 1; }
  t1=$(now); secs "$t0" "$t1"
}
median() { sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }
ROUNDS=${ROUNDS:-5}

declare -A put get_w get_o get_e
# The embedded store lives outside the clusters' directory, so its gets can be timed in
# turn with each cluster's: this machine is shared, and its speed drifts over minutes.
# It has an identity of its own: each cluster starts from an empty directory, its own too.
emb=$work/cluster-embedded
rm -rf "$emb" "$emb.id"
embedded() { "$ouro" --identity "$emb.id" --store "$emb" "$@"; }
embedded init -q
put[e]=$(timed put embedded put -q big "$input")
for n in 3 6; do
  echo "cluster of $n" >&2
  cluster "$n"
  put[$n]=$(timed put "$ouro" --store "$cw/n1" put -q big "$input")
  sleep 1
  # Rounds of: a get on the embedded store, on the writing node, on another node.
  e=() w=() o=()
  for r in $(seq "$ROUNDS"); do
    e+=("$(timed get embedded get big)")
    w+=("$(timed get "$ouro" --store "$cw/n1" get big)")
    o+=("$(timed get "$ouro" --store "$cw/n2" get big)")
  done
  get_e[$n]=$(printf '%s\n' "${e[@]}" | median)
  get_w[$n]=$(printf '%s\n' "${w[@]}" | median)
  get_o[$n]=$(printf '%s\n' "${o[@]}" | median)
  "$ouro" --store "$cw/n2" get big | cmp - "$input"
  stop_all
done
rm -rf "$emb" "$emb.id"
ratio() { echo "$2 / $1" | bc -l | xargs printf '%.2f'; }
{
  echo "# Cluster benchmark"
  echo
  echo "$(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, loopback; input: $(basename "$input"), $size bytes; ouro $(git rev-parse --short HEAD), RS 4+2. Reproduce: \`bench/cluster.sh\`."
  echo
  echo "| setup | put s (MB/s) | get on the embedded store s (MB/s) | get on the writing node s (MB/s) | get on another node s (MB/s) | put / get throughput vs embedded |"
  echo "|---|---|---|---|---|---|"
  echo "| embedded store | ${put[e]} ($(mbps "${put[e]}")) | - | - | - | 1 / 1 |"
  for n in 3 6; do
    echo "| $n nodes | ${put[$n]} ($(mbps "${put[$n]}")) | ${get_e[$n]} ($(mbps "${get_e[$n]}")) | ${get_w[$n]} ($(mbps "${get_w[$n]}")) | ${get_o[$n]} ($(mbps "${get_o[$n]}")) | $(ratio "${put[$n]}" "${put[e]}") / $(ratio "${get_o[$n]}" "${get_e[$n]}") |"
  done
  echo
  echo "Gets: median of $ROUNDS rounds; each round times a get on the embedded store, on the writing node and on another node in turn, and the get ratio compares the other node's with the embedded store's of the same rounds (this machine is shared and drifts). All nodes run on this one machine, so a cluster put also pays for the receiving nodes' writes and fsyncs; target: >= 0.5x the embedded store's throughput."
} >"$root/bench/CLUSTER_RESULTS.md"
cat "$root/bench/CLUSTER_RESULTS.md"
