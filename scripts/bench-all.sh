#!/bin/bash
# Every benchmark in one pass, as docs/benchmarks.md's tables of a day are
# measured (as root, images built: make images). Each bench prints the
# load average before and after; run it on a machine doing nothing else.
#   scripts/bench-all.sh [BENCH...]     e.g. scripts/bench-all.sh tap vxlan
#   TCPCC=cubic scripts/bench-all.sh ...    the host-side iperf3 senders' TCP
#                                        congestion control (tap, vxlan, cnt)
export PATH=$PATH:/usr/local/go/bin
cd "$(dirname "$0")/.." || exit 1
make build >/dev/null || exit 1
B=$(pwd)/bin/cloonix
ld() { echo "== $* load $(cut -d' ' -f1-3 /proc/loadavg) $(date -u +%H:%M:%S)"; }
cc=${TCPCC:+-cc $TCPCC}
declare -A args=(
	[tap]="-rounds 5 -t 5 -bin $B $cc"
	[vxlan]="-n 5 -t 8 -bin $B $cc"
	[fabric]="-rounds 5"
	[impair]="-rounds 5"
	[guests]="-rounds 5 -t 8 -bin $B"
	[scale]="-n 100 -rounds 5 -bin $B"
	[boot]="-rounds 3"
	[cnt]="-rounds 5 -bin $B $cc"
)
order=(tap vxlan fabric impair guests scale boot cnt)
[ $# -gt 0 ] && order=("$@")
echo "commit $(git rev-parse --short HEAD), $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
for n in "${order[@]}"; do
	[ -n "${args[$n]+x}" ] || { echo "unknown bench $n: one of ${!args[*]}" >&2; exit 1; }
	ld start "$n" ${args[$n]}
	# shellcheck disable=SC2086
	go run "./bench/$n" ${args[$n]} 2>&1
	ld end "$n"
	# let the load average after a big bench (scale's 100 guests) settle,
	# at most 2 minutes (a busy machine stays busy)
	for _ in $(seq 12); do [ "$(cut -d. -f1 /proc/loadavg)" -lt 4 ] && break; sleep 10; done
done
