#!/usr/bin/env bash
# A rolling upgrade of a network of processes, from one build of dtenge to a newer one, under
# load: every participant is stopped and started again on the new build, one at a time, while
# the others go on.
#   bash scripts/rolling-upgrade.sh OLD_BINARY NEW_BINARY [DIR]
# 1. OLD lays out a cluster under DIR (`dtenge cluster`) and every participant runs on OLD.
# 2. NEW's `dtenge bench --cluster DIR` pays across banks (open loop) while the NBK's
#    participants are upgraded one at a time: the notary's replicas (the leader among them),
#    the directory, the oracle, central. Each is stopped (SIGTERM), started on NEW, and must
#    serve /health again before the next.
# 3. The banks are upgraded the same way (their own APIs are the bench's entry, so between
#    loads), then a second load runs on the upgraded network.
# Both loads must end without an error and reconcile across the processes (the bench checks).
set -euo pipefail
OLD=$(realpath "$1"); NEW=$(realpath "$2"); DIR=${3:-/tmp/dtenge-rolling}
BASE=${BASE_PORT:-24100}
rm -rf "$DIR"; mkdir -p "$DIR"
declare -A PID

health() { curl -sf "http://$(grep -m1 '^ops' "$DIR/$1/config.toml" | cut -d'"' -f2)/health" >/dev/null; }
wait_health() {
  for _ in $(seq 1 600); do health "$1" && return 0; sleep 0.1; done
  echo "$1 did not come back" >&2; tail -20 "$DIR/$1.log" >&2; return 1
}
start() { # start NAME BINARY
  local role; role=$(grep -m1 '^role' "$DIR/$1/config.toml" | cut -d'"' -f2)
  "$2" run --role "$role" --config "$DIR/$1/config.toml" >>"$DIR/$1.log" 2>&1 &
  PID[$1]=$!
  wait_health "$1"
}
stop() { kill -TERM "${PID[$1]}"; wait "${PID[$1]}" || true; }
upgrade() { # upgrade NAME: stop it, start it on NEW
  local was; was=$(curl -s "http://$(grep -m1 '^ops' "$DIR/$1/config.toml" | cut -d'"' -f2)/metrics" | grep -c '^dtenge_notary_raft_leader{[^}]*} 1$' || true)
  stop "$1"; start "$1" "$NEW"
  echo "== $1 runs the new build$([ "$was" = 1 ] && echo ' (it was the notary'"'"'s leader)')"
  sleep 3
}
cleanup() { for name in "${!PID[@]}"; do kill -TERM "${PID[$name]}" 2>/dev/null || true; done; wait || true; }
trap cleanup EXIT

echo "== laying out a cluster with the old build ($OLD)"
"$OLD" cluster --dir "$DIR" --base-port "$BASE" >"$DIR/cluster.log" 2>&1 &
SUPERVISOR=$!
for name in directory notary-1 notary-2 notary-3 central oracle steppe tulpar sapa treasury; do
  until [ -f "$DIR/$name/config.toml" ] && health "$name"; do sleep 0.2; done
done
kill -TERM $SUPERVISOR; wait $SUPERVISOR || true
NAMES=(directory notary-1 notary-2 notary-3 central oracle steppe tulpar sapa treasury)
for name in "${NAMES[@]}"; do start "$name" "$OLD"; done
echo "== every participant runs the old build"

"$NEW" bench --cluster "$DIR" --accounts 3000 --rate 300 --connections 32 --duration-s 45 >"$DIR/bench-1.txt" 2>&1 &
BENCH=$!
sleep 20   # the bench seeds its accounts first
for name in notary-3 notary-2 notary-1 directory oracle central; do upgrade "$name"; done
wait $BENCH || { cat "$DIR/bench-1.txt"; echo "the load during the NBK's upgrade failed" >&2; exit 1; }
grep -E '^(payments|reconciliation|checks)' "$DIR/bench-1.txt"

for name in treasury sapa tulpar steppe; do upgrade "$name"; done
"$NEW" bench --cluster "$DIR" --accounts 3000 --rate 300 --connections 32 --duration-s 10 >"$DIR/bench-2.txt" 2>&1 ||
  { cat "$DIR/bench-2.txt"; echo "the load on the upgraded network failed" >&2; exit 1; }
grep -E '^(payments|reconciliation|checks)' "$DIR/bench-2.txt"
echo "== rolling upgrade done: every participant on the new build, nothing lost, reconciled"
