#!/bin/bash
# make demo (after deps, build and images): start the switch with the
# default config, load demos/lan_rule and demos/ospf side by side, show
# what they prove, and leave the lab running with commands to explore it.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-$PWD/bin/cloonix}
CFG=${CLOONIX_CONFIG:-$HOME/.config/cloonix/config.xml}
C=("$BIN" -c "$CFG")
failed=0

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
ok() { printf '  \033[32mok\033[0m   %s\n' "$*"; }
bad() { printf '  \033[31mFAIL\033[0m %s\n' "$*"; failed=1; }
# pings VM ADDR: one echo answered within three tries (a guest's ARP entry
# for an address that did not answer may need a few seconds to retry).
pings() {
	for _ in 1 2 3; do
		"${C[@]}" exec "$1" -- ping -c1 -W2 "$2" >/dev/null 2>&1 && return 0
	done
	return 1
}

say "the switch"
"${C[@]}" start
# The images were built into CLOONIX_BULK; the switch looks in its
# config's <bulk_dir>. Say so plainly when they differ.
bulk=$(sed -n 's:.*<bulk_dir>\(.*\)</bulk_dir>.*:\1:p' "$CFG" | head -1)
bulk=$(eval echo "$bulk")
if [ -n "${CLOONIX_BULK:-}" ] && [ -n "$bulk" ] && [ "$(realpath -m "$bulk")" != "$(realpath -m "$CLOONIX_BULK")" ]; then
	echo "the images are in $CLOONIX_BULK but $CFG has <bulk_dir>$bulk</bulk_dir>; make them agree" >&2
	exit 1
fi

say "demos/lan_rule: the seed's lan rule (A, B, C on busybox, UML)"
"${C[@]}" fconf load --add demos/lan_rule
pings A 10.0.0.2 && ok "A pings B (both on lan_one)" || bad "A does not ping B"
pings B 10.0.0.3 && ok "B pings C (both on lan_two; B's eth0 is on both lans)" || bad "B does not ping C"
pings A 10.0.0.3 && bad "A pings C, yet they share no lan" || ok "A does not reach C: they share no lan"
pidA=$("${C[@]}" ctrl list --json | sed -n '/"name": "A"/,/"pid"/s/.*"pid": \([0-9]*\).*/\1/p' | head -1)
"${C[@]}" ctrl attach A:eth0 lan_two
pings A 10.0.0.3 && ok "after \`ctrl attach A:eth0 lan_two\`, A pings C at once" || bad "A does not ping C after the attach"
"${C[@]}" fconf load --add demos/lan_rule >/dev/null
pings A 10.0.0.3 && bad "A still pings C after reloading the demo" || ok "\`fconf load\` of the demo detached it again, live"
pidA2=$("${C[@]}" ctrl list --json | sed -n '/"name": "A"/,/"pid"/s/.*"pid": \([0-9]*\).*/\1/p' | head -1)
[ "$pidA" = "$pidA2" ] && ok "A was never rebooted (pid $pidA)" || bad "A's pid changed: $pidA -> $pidA2"

say "demos/ospf: three FRR routers and two hosts (debian-frr, UML)"
"${C[@]}" fconf load --add demos/ospf
start=$(date +%s)
until pings HOST1 10.3.0.10; do
	if [ $(($(date +%s) - start)) -gt 180 ]; then
		bad "HOST1 does not reach HOST2 after 180 s"
		break
	fi
	sleep 2
done
if pings HOST1 10.3.0.10; then
	ok "OSPF converged: HOST1 reaches HOST2 across the routers ($(($(date +%s) - start)) s after boot)"
	echo
	echo "  \$ cloonix exec HOST1 -- ping -c3 HOST2"
	"${C[@]}" exec HOST1 -- ping -c3 10.3.0.10 | sed 's/^/    /'
	echo "  \$ cloonix exec ROUTER1 -- vtysh -c 'show ip ospf neighbor'"
	"${C[@]}" exec ROUTER1 -- vtysh -c 'show ip ospf neighbor' | sed 's/^/    /'
	echo "  \$ cloonix exec ROUTER1 -- vtysh -c 'show ip route ospf'"
	"${C[@]}" exec ROUTER1 -- vtysh -c 'show ip route ospf' | sed 's/^/    /'
fi

say "the lab is running"
"${C[@]}" ctrl list
hint=""
[ -n "${CLOONIX_CONFIG:-}" ] && hint=", adding -c $CFG"
cat <<EOF

Explore it with bin/cloonix$hint:
  cloonix ctrl list                                   machines, lans, ports, tux
  cloonix exec B -- ip addr                           a command in a guest
  cloonix console ROUTER2                             a guest's serial console
  cloonix ctrl detach ROUTER1:eth2 lan_r13            cut a link; OSPF goes round by ROUTER2
  cloonix exec ROUTER1 -- vtysh -c 'show ip route'
  cloonix ctrl impair lan_r12 delay=50ms              slow a link down
  cloonix graph                                       the lab in a web page
  cloonix fconf save /tmp/lab.xml                     the running lab as a topology file
  cloonix fconf load demos/lan_rule --plan            what loading only lan_rule would change
  cloonix stop                                        stop everything
Docs: docs/topology.md (topology files, demo folders, fconf).
EOF
exit $failed
