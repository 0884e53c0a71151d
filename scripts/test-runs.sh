#!/bin/bash
# Issue 19's evidence: `make test` on fresh clones of one commit, N runs in
# a row, some with `stress-ng --cpu 1` keeping a core busy the whole run.
#   C=COMMIT [N=5] [STRESS="2 4"] [OUT=/tmp/test-runs] scripts/test-runs.sh
# Each run's log is OUT/run-I.log, its e2e log OUT/e2e-I.log, and a line per
# run start and end goes to OUT/summary.
export PATH=$PATH:/usr/local/go/bin
REPO=$(cd "$(dirname "$0")/.." && pwd)
C=${C:?give C=commit}
N=${N:-5}
STRESS=${STRESS:-"2 4"}
OUT=${OUT:-/tmp/test-runs}
mkdir -p "$OUT"
load() { cut -d' ' -f1-3 /proc/loadavg; }
for i in $(seq 1 "$N"); do
	d=$OUT/clone-$i
	rm -rf "$d"
	git clone -q "$REPO" "$d" && git -C "$d" checkout -q "$C" || exit 1
	sp=""
	if [[ " $STRESS " == *" $i "* ]]; then
		command -v stress-ng >/dev/null || { echo "stress-ng missing: apt-get install stress-ng" >&2; exit 1; }
		stress-ng --cpu 1 --quiet &
		sp=$!
	fi
	s=$(date +%s)
	echo "run $i commit $C stress=${sp:+yes} start $(date -u +%H:%M:%S) load $(load)" >>"$OUT/summary"
	rm -f /tmp/cloonix-e2e.log
	(cd "$d" && make test) >"$OUT/run-$i.log" 2>&1
	rc=$?
	[ -n "$sp" ] && kill "$sp" && wait "$sp" 2>/dev/null
	cp /tmp/cloonix-e2e.log "$OUT/e2e-$i.log" 2>/dev/null
	e2e=$(grep -hE '^(ok|FAIL)' "$OUT/e2e-$i.log" 2>/dev/null | tail -1)
	echo "run $i rc=$rc $(($(date +%s) - s))s end $(date -u +%H:%M:%S) load $(load) e2e: ${e2e:-not run}" >>"$OUT/summary"
	rm -rf "$d"
done
