#!/usr/bin/env bash
# Self-healing and convergence, measured on real node processes. Writes bench/HEALING_RESULTS.md.
#   bench/healing.sh
# (1) Seven loopback nodes, RS 4+2, --repair-after 5: store SIZE_MIB of random data (default
#     1024), SIGKILL one node, time until `under_replicated_chunks` is 0 again, and the bytes
#     the survivors fetched to rebuild (repair_bytes).
# (2) Four nodes in two network namespaces (needs root and `ip netns`): cut them apart, store
#     N new keys on each side (put -r of N small files), heal, time until every node lists all
#     keys, and the metadata bytes pulled (replication_bytes), for N = 100 and N = 1000: traffic
#     should grow with N, not with the store.
source "$(dirname "$0")/common.sh"
need bc:bc
build_ouro
size_mib=${SIZE_MIB:-1024}
hw=$work/healing
export OURO_IDENTITY=$hw/id.txt
pids=()
stop_all() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; pids=(); }
cleanup() { stop_all; ip netns del ouroHA 2>/dev/null || true; ip netns del ouroHB 2>/dev/null || true; }
trap cleanup EXIT
now() { date +%s.%N; }
secs() { echo "$2 - $1" | bc -l | xargs printf '%.1f'; }
st() { "$ouro" --store "$1" --json cluster status 2>/dev/null || echo '{}'; }
field() { python3 -c "import json,sys; d=json.load(sys.stdin); print(d.get('$1', -1))"; }
alive() { st "$1" | grep -c '"state": "alive"' || true; }
# start_node STORE ADDR [NETNS] [TOKEN]
start_node() {
  local pre=()
  [ -n "${3:-}" ] && pre=(ip netns exec "$3")
  if [ -n "${4:-}" ]; then
    "${pre[@]}" "$ouro" --store "$1" node run --listen "$2" --repair-after 5 --join "$4" 2>"$1.log" & pids+=($!)
  else
    "${pre[@]}" "$ouro" --store "$1" node run --listen "$2" --repair-after 5 2>"$1.log" & pids+=($!)
  fi
}
# cluster EC ADDR:NETNS...: nodes n1.. at those addresses, all alive
cluster() {
  local ec=$1 i=1 spec tok n=$(($# - 1))
  shift
  stop_all; rm -rf "$hw"; mkdir -p "$hw"
  for spec in "$@"; do
    if [ $i = 1 ]; then
      "$ouro" --store "$hw/n1" init -q --ec "$ec"
      "$ouro" --store "$hw/n1" cluster init -q
      start_node "$hw/n1" "${spec%%@*}" "${spec#*@}"
      until [ "$(alive "$hw/n1")" -ge 1 ]; do sleep 0.2; done
    else
      tok=$("$ouro" --store "$hw/n1" cluster invite -q | tail -1)
      start_node "$hw/n$i" "${spec%%@*}" "${spec#*@}" "$tok"
      until [ "$(alive "$hw/n1")" -ge "$i" ]; do sleep 0.2; done
    fi
    i=$((i + 1))
  done
  until [ "$(alive "$hw/n$n")" -ge "$n" ]; do sleep 0.3; done
}

# (1) repair after a node loss
cluster 4+2 127.0.0.1:29001@ 127.0.0.1:29002@ 127.0.0.1:29003@ 127.0.0.1:29004@ 127.0.0.1:29005@ 127.0.0.1:29006@ 127.0.0.1:29007@
head -c $((size_mib << 20)) /dev/urandom >"$hw/data.bin"
"$ouro" --store "$hw/n1" put -q data "$hw/data.bin" >/dev/null
until [ "$(st "$hw/n1" | field under_replicated_chunks)" = 0 ]; do sleep 0.5; done
before=$(st "$hw/n1" | field repair_bytes)
kill -9 "${pids[6]}"
t0=$(now)
until [ "$(st "$hw/n1" | grep -c '"state": "dead"')" -ge 1 ]; do sleep 0.5; done
until [ "$(st "$hw/n1" | field under_replicated_chunks)" = 0 ] && [ "$(st "$hw/n2" | field under_replicated_chunks)" = 0 ]; do sleep 0.5; done
t1=$(now)
repair_s=$(secs "$t0" "$t1")
after=$(st "$hw/n1" | field repair_bytes)
repair_mb=$(echo "($after - $before) / 1000000" | bc -l | xargs printf '%.0f')
"$ouro" --store "$hw/n2" get data | cmp - "$hw/data.bin"
stored_mb=$(du -sm "$hw"/n[1-6] | awk '{s+=$1} END {print s}')
stop_all

# (2) convergence after a partition
part=""
if ip netns add ouroHA 2>/dev/null && ip netns add ouroHB; then
  ip link add ohA type veth peer name ohB
  ip link set ohA netns ouroHA; ip link set ohB netns ouroHB
  ip -n ouroHA addr add 10.202.0.1/24 dev ohA; ip -n ouroHB addr add 10.202.0.2/24 dev ohB
  for ns in ouroHA ouroHB; do ip -n $ns link set lo up; done
  ip -n ouroHA link set ohA up; ip -n ouroHB link set ohB up
  for n in 100 1000; do
    cluster 2+1 10.202.0.1:29101@ouroHA 10.202.0.1:29102@ouroHA 10.202.0.2:29103@ouroHB 10.202.0.2:29104@ouroHB
    # Some shared history first, so the store is larger than the difference.
    mkdir -p "$hw/base"; for i in $(seq 1 2000); do echo "base $i" >"$hw/base/f$i"; done
    "$ouro" --store "$hw/n1" put -r -q "$hw/base" base
    until [ "$("$ouro" --store "$hw/n4" ls base | wc -l)" = 2000 ]; do sleep 0.3; done
    ip -n ouroHA route add blackhole 10.202.0.2/32; ip -n ouroHB route add blackhole 10.202.0.1/32
    sleep 8
    for side in a b; do
      mkdir -p "$hw/$side"; for i in $(seq 1 "$n"); do echo "$side $i" >"$hw/$side/f$i"; done
    done
    "$ouro" --store "$hw/n1" put -r -q "$hw/a" side-a
    "$ouro" --store "$hw/n3" put -r -q "$hw/b" side-b
    sleep 2
    # replication_bytes in a node's status is already the sum over the nodes it hears from;
    # read it where both sides are counted: after the partition, from any node.
    b0=0; for i in 1 3; do b0=$((b0 + $(st "$hw/n$i" | field replication_bytes))); done
    ip -n ouroHA route del blackhole 10.202.0.2/32; ip -n ouroHB route del blackhole 10.202.0.1/32
    t0=$(now)
    for i in 1 2 3 4; do
      until [ "$("$ouro" --store "$hw/n$i" ls | wc -l)" = $((2000 + 2 * n)) ]; do sleep 0.2; done
    done
    t1=$(now)
    sleep 2
    b1=$(st "$hw/n1" | field replication_bytes)
    part+="| $n keys changed on each side | $(secs "$t0" "$t1") | $(echo "($b1 - $b0) / 1000" | bc -l | xargs printf '%.0f') |"$'\n'
  done
  stop_all
else
  part="| (skipped: no network namespaces here) | - | - |"$'\n'
fi

{
  echo "# Healing benchmark"
  echo
  echo "$(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores; ouro $(git rev-parse --short HEAD). Reproduce: \`sudo bench/healing.sh\`."
  echo
  echo "## Full redundancy after a node loss (7 nodes, RS 4+2, --repair-after 5)"
  echo
  echo "| data | time from SIGKILL to under_replicated_chunks = 0 (s) | bytes fetched for repair (MB) | store directories of the 6 survivors (MB) |"
  echo "|---|---|---|---|"
  echo "| ${size_mib} MiB random | $repair_s | $repair_mb | $stored_mb |"
  echo
  echo "The time includes 5 s of grace before the dead node leaves placement, and the sweeps that follow (a slice whose holder left placement is repaired at once; one that lacks for another reason waits 5 s, the time a put takes to hand it over). Rebuilding a slice fetches k = 4 others."
  echo
  echo "## Convergence after a partition (4 nodes in two network namespaces, 2,000 keys before)"
  echo
  echo "| change | time from healing until every node lists every key (s) | metadata pulled by all nodes (kB) |"
  echo "|---|---|---|"
  printf '%s' "$part"
} >"$root/bench/HEALING_RESULTS.md"
cat "$root/bench/HEALING_RESULTS.md"
