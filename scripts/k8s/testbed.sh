#!/bin/bash
# A 2-node Kubernetes on this machine, for cloonix's kube tests.
#   testbed.sh up     build (cached), then start etcd + control plane + nodes
#   testbed.sh down   stop everything it started, restore the host's sysctls
#   testbed.sh env    print the KUBECONFIG line to eval
#   testbed.sh node-stop kubetb-nN   node N goes away (kubelet, containerd and
#                     its pods stop, as at a power loss); node-start brings it back
# Every address is on this machine: the control plane listens on the host
# bridge kubetb0 (10.213.0.1); each node is a network namespace (kubetb-nN,
# 10.213.0.1N) joined to that bridge, running its own containerd and kubelet
# started with nsenter --net (ip netns exec would remount /sys). Pod ranges
# 10.214.N.0/24 are routed to their node from the host and from the other
# nodes, so no reply leaves by the default route.
set -euo pipefail
K8S_DIR=${K8S_DIR:-$HOME/.cache/cloonix-k8s}
TB=${K8S_TESTBED:-/var/lib/cloonix-k8s-testbed}
RUN=/run/cloonix-k8s-testbed
BIN=$K8S_DIR/bin
NODES=${K8S_NODES:-2}
BR=kubetb0
HOST_IP=10.213.0.1
API_PORT=16443
ETCD_PORT=23790
SVC_RANGE=10.215.0.0/24
PAUSE_IMAGE=docker.io/cloonix/k8s-pause:1
# The kubelet sets these on the host (kubelet's setupKernelTunables).
SYSCTLS="vm.overcommit_memory kernel.panic kernel.panic_on_oops"
here=$(cd "$(dirname "$0")" && pwd)

log() { echo "k8s-testbed: $*"; }
node_ip() { echo "10.213.0.1$1"; }
pod_range() { echo "10.214.$1.0/24"; }

# start NAME CMD...: runs CMD in the background, its pid in $RUN/NAME.pid.
start() {
	local name=$1
	shift
	if [ -f "$RUN/$name.pid" ] && kill -0 "$(cat "$RUN/$name.pid")" 2>/dev/null; then
		log "$name already running"
		return
	fi
	setsid "$@" >"$TB/log/$name.log" 2>&1 </dev/null &
	echo $! >"$RUN/$name.pid"
}

certs() {
	local d=$TB/pki
	[ -f "$d/admin.crt" ] && return
	mkdir -p "$d"
	cd "$d"
	openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj /CN=cloonix-k8s-testbed-ca \
		-keyout ca.key -out ca.crt 2>/dev/null
	openssl req -newkey rsa:2048 -nodes -subj /CN=kube-apiserver -keyout apiserver.key \
		-out apiserver.csr 2>/dev/null
	printf 'subjectAltName=IP:%s,IP:10.215.0.1,IP:127.0.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc\n' \
		"$HOST_IP" >apiserver.ext
	openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
		-extfile apiserver.ext -out apiserver.crt 2>/dev/null
	# One client identity for the test bed's own parts (system:masters):
	# this cluster lives for a test run on one machine; its kubelets,
	# controller-manager and scheduler need no separate identities.
	openssl req -newkey rsa:2048 -nodes -subj "/O=system:masters/CN=admin" -keyout admin.key \
		-out admin.csr 2>/dev/null
	openssl x509 -req -in admin.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
		-out admin.crt 2>/dev/null
	openssl genrsa -out sa.key 2048 2>/dev/null
	openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
	cd - >/dev/null
}

kubeconfig() {
	cat >"$TB/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: testbed
  cluster:
    server: https://$HOST_IP:$API_PORT
    certificate-authority: $TB/pki/ca.crt
users:
- name: admin
  user:
    client-certificate: $TB/pki/admin.crt
    client-key: $TB/pki/admin.key
contexts:
- name: testbed
  context: {cluster: testbed, user: admin}
current-context: testbed
EOF
}

network() {
	ip link show "$BR" >/dev/null 2>&1 || {
		ip link add "$BR" type bridge
		ip addr add "$HOST_IP/24" dev "$BR"
	}
	ip link set "$BR" up
	local n
	for n in $(seq 1 "$NODES"); do
		local ns=kubetb-n$n
		[ -e "/run/netns/$ns" ] || ip netns add "$ns"
		if ! ip link show "kubetb-n${n}h" >/dev/null 2>&1; then
			ip link add "kubetb-n${n}h" type veth peer name eth0 netns "$ns"
			ip link set "kubetb-n${n}h" master "$BR" up
			ip -n "$ns" addr add "$(node_ip "$n")/24" dev eth0
			ip -n "$ns" link set eth0 up
			ip -n "$ns" link set lo up
			ip -n "$ns" route add default via "$HOST_IP"
		fi
		nsenter --net="/run/netns/$ns" sysctl -qw net.ipv4.ip_forward=1
		ip route replace "$(pod_range "$n")" via "$(node_ip "$n")"
		local m
		for m in $(seq 1 "$NODES"); do
			[ "$m" = "$n" ] || ip -n "$ns" route replace "$(pod_range "$m")" via "$(node_ip "$m")"
		done
	done
}

control_plane() {
	start etcd etcd --name kubetb --data-dir "$TB/etcd" \
		--listen-client-urls "http://127.0.0.1:$ETCD_PORT" \
		--advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
		--listen-peer-urls http://127.0.0.1:23800 --initial-advertise-peer-urls http://127.0.0.1:23800 \
		--initial-cluster kubetb=http://127.0.0.1:23800
	local p=$TB/pki
	start kube-apiserver "$BIN/kube-apiserver" --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
		--bind-address "$HOST_IP" --advertise-address "$HOST_IP" --secure-port "$API_PORT" \
		--service-cluster-ip-range "$SVC_RANGE" --client-ca-file "$p/ca.crt" \
		--tls-cert-file "$p/apiserver.crt" --tls-private-key-file "$p/apiserver.key" \
		--service-account-key-file "$p/sa.pub" --service-account-signing-key-file "$p/sa.key" \
		--service-account-issuer https://kubernetes.default.svc --authorization-mode Node,RBAC \
		--kubelet-client-certificate "$p/admin.crt" --kubelet-client-key "$p/admin.key" \
		--kubelet-preferred-address-types InternalIP,Hostname --allow-privileged=true
	local i
	for i in $(seq 60); do
		"$BIN/kubectl" --kubeconfig "$TB/kubeconfig" get --raw /readyz >/dev/null 2>&1 && break
		sleep 1
	done
	"$BIN/kubectl" --kubeconfig "$TB/kubeconfig" get --raw /readyz >/dev/null ||
		{ log "kube-apiserver not ready: $TB/log/kube-apiserver.log"; exit 1; }
	start kube-controller-manager "$BIN/kube-controller-manager" --kubeconfig "$TB/kubeconfig" \
		--service-account-private-key-file "$p/sa.key" --root-ca-file "$p/ca.crt" \
		--use-service-account-credentials=false --bind-address 127.0.0.1 --secure-port 0 \
		--node-monitor-period 2s --node-monitor-grace-period 20s
	start kube-scheduler "$BIN/kube-scheduler" --kubeconfig "$TB/kubeconfig" \
		--bind-address 127.0.0.1 --secure-port 0
}

# pause_image: the sandbox image containerd uses, built here from
# busybox-static (no registry is reachable): its sleep is the pod's PID 1.
pause_image() {
	local tar=$TB/pause.tar
	[ -f "$tar" ] && return
	local w=$TB/pause-build
	rm -rf "$w"
	mkdir -p "$w"
	umoci init --layout "$w/oci"
	umoci new --image "$w/oci:pause"
	umoci unpack --image "$w/oci:pause" "$w/bundle" >/dev/null
	mkdir -p "$w/bundle/rootfs/bin"
	cp /bin/busybox "$w/bundle/rootfs/bin/busybox"
	ln -s busybox "$w/bundle/rootfs/bin/sleep"
	umoci repack --image "$w/oci:pause" "$w/bundle"
	umoci config --image "$w/oci:pause" --config.entrypoint /bin/sleep --config.cmd infinity
	skopeo copy -q "oci:$w/oci:pause" "docker-archive:$tar:$PAUSE_IMAGE"
	rm -rf "$w"
}

containerd_conf() {
	local n=$1 d=$TB/n$1 restrict_oom=false
	# CAP_SYS_RESOURCE is bit 24 of the effective capabilities.
	(( (0x$(awk '/^CapEff/ {print $2}' /proc/self/status) >> 24) & 1 )) || restrict_oom=true
	mkdir -p "$d/cni" "$d/containerd"
	cat >"$d/containerd.toml" <<EOF
version = 2
root = "$d/containerd"
state = "$RUN/n$n/containerd"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "$RUN/n$n/containerd.sock"
[ttrpc]
  address = "$RUN/n$n/containerd.sock.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  # Without CAP_SYS_RESOURCE (this machine's root lacks it) no process may
  # lower its oom_score_adj: keep the kubelet's values (pause -998) no lower
  # than containerd's own, as rootless setups do.
  restrict_oom_score_adj = $restrict_oom
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
      SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$d/cni"
EOF
	cat >"$d/cni/10-kubetb.conflist" <<EOF
{"cniVersion": "0.4.0", "name": "kubetb", "plugins": [
  {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": false,
   "ipam": {"type": "host-local", "dataDir": "$d/cni-ipam",
            "ranges": [[{"subnet": "$(pod_range "$n")"}]], "routes": [{"dst": "0.0.0.0/0"}]}}]}
EOF
}

kubelet_conf() {
	local n=$1 d=$TB/n$1
	cat >"$d/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: cgroupfs
failCgroupV1: false
cgroupRoot: /kubetb-n$n
failSwapOn: false
address: $(node_ip "$n")
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
containerRuntimeEndpoint: unix://$RUN/n$n/containerd.sock
podCIDR: $(pod_range "$n")
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
  x509: {clientCAFile: $TB/pki/ca.crt}
authorization: {mode: AlwaysAllow}
resolvConf: /etc/resolv.conf
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%"}
imageGCHighThresholdPercent: 100
serializeImagePulls: false
EOF
}

node_up() {
	local n=$1 ns=/run/netns/kubetb-n$1 d=$TB/n$1
	mkdir -p "$RUN/n$n"
	# The kubelet's cgroupRoot must exist in each v1 hierarchy.
	local h
	for h in /sys/fs/cgroup/*/; do
		[ "$h" = /sys/fs/cgroup/unified/ ] && continue
		mkdir -p "$h/kubetb-n$n"
	done
	containerd_conf "$n"
	kubelet_conf "$n"
	start "containerd-n$n" nsenter --net="$ns" containerd --config "$d/containerd.toml"
	local i
	for i in $(seq 30); do
		[ -S "$RUN/n$n/containerd.sock" ] && break
		sleep 1
	done
	ctr -a "$RUN/n$n/containerd.sock" -n k8s.io images import "$TB/pause.tar" >/dev/null
	start "kubelet-n$n" nsenter --net="$ns" "$BIN/kubelet" --config "$d/kubelet.yaml" \
		--kubeconfig "$TB/kubeconfig" --hostname-override "kubetb-n$n" \
		--node-ip "$(node_ip "$n")" --root-dir "$d/kubelet" --cert-dir "$d/pki"
}

up() {
	"$here/build.sh"
	mkdir -p "$TB/log" "$RUN"
	if [ -f "$RUN/kube-apiserver.pid" ] && kill -0 "$(cat "$RUN/kube-apiserver.pid")" 2>/dev/null; then
		log "already running (make k8s-testbed-stop first)"
		exit 1
	fi
	[ -f "$TB/sysctls" ] || sysctl $SYSCTLS >"$TB/sysctls"
	certs
	kubeconfig
	network
	pause_image
	control_plane
	local n
	for n in $(seq 1 "$NODES"); do node_up "$n"; done
	local i
	for i in $(seq 120); do
		[ "$("$BIN/kubectl" --kubeconfig "$TB/kubeconfig" get nodes --no-headers 2>/dev/null |
			awk '$2 == "Ready"' | wc -l)" = "$NODES" ] && break
		sleep 1
	done
	"$BIN/kubectl" --kubeconfig "$TB/kubeconfig" get nodes -o wide
	[ "$("$BIN/kubectl" --kubeconfig "$TB/kubeconfig" get nodes --no-headers | awk '$2 == "Ready"' | wc -l)" = "$NODES" ] ||
		{ log "nodes not Ready: see $TB/log/kubelet-n*.log"; exit 1; }
	log "up: export KUBECONFIG=$TB/kubeconfig PATH=$BIN:\$PATH"
}

# stop NAME: ends the process it started (by its recorded pid).
stop() {
	local f=$RUN/$1.pid
	[ -f "$f" ] || return 0
	local pid
	pid=$(cat "$f")
	kill "$pid" 2>/dev/null || true
	local i
	for i in $(seq 20); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.5
	done
	kill -9 "$pid" 2>/dev/null || true
	rm -f "$f"
}

# node_kill N: node N's machine "loses power": its kubelet, containerd,
# pods and their mounts go; its files, namespace and node object stay.
node_kill() {
	local n=$1 d=$TB/n$1
	stop "kubelet-n$n"
	# The pod netns files the CRI plugin mounted in /run/netns for this
	# node's sandboxes (named cni-<uuid>: asked from its containerd).
	local sock=$RUN/n$n/containerd.sock c netns=""
	if [ -S "$sock" ]; then
		for c in $(ctr -a "$sock" -n k8s.io containers ls -q 2>/dev/null); do
			netns+=" $(ctr -a "$sock" -n k8s.io containers info "$c" 2>/dev/null |
				grep -o '/var/run/netns/cni-[0-9a-f-]*' | sort -u || true)"
		done
	fi
	# The pods' processes: everything in this node's cgroup tree, then the
	# runc shims this node's containerd started (found by its socket path).
	local f pid
	for f in $(find "/sys/fs/cgroup/pids/kubetb-n$n" -name cgroup.procs 2>/dev/null); do
		for pid in $(cat "$f"); do kill -9 "$pid" 2>/dev/null || true; done
	done
	for pid in $(pgrep -f -- "-address $RUN/n$n/containerd.sock" || true); do
		kill -9 "$pid" 2>/dev/null || true
	done
	stop "containerd-n$n"
	# Mounts left by kubelet (volumes) and containerd (rootfs, shm, netns).
	local m
	for m in $(awk '{print $5}' /proc/self/mountinfo | grep -E "^($d|$RUN/n$n)/" | sort -r); do
		umount -l "$m" 2>/dev/null || true
	done
	for m in $netns; do
		umount "$m" 2>/dev/null || true
		rm -f "$m"
	done
}

node_down() {
	local n=$1 d=$TB/n$1
	node_kill "$n"
	local h
	for h in /sys/fs/cgroup/*/kubetb-n$n; do
		[ -d "$h" ] && find "$h" -depth -type d -exec rmdir {} \; 2>/dev/null || true
	done
	ip netns del "kubetb-n$n" 2>/dev/null || true
	ip route del "$(pod_range "$n")" 2>/dev/null || true
	rm -rf "$d"
}

down() {
	local n
	for n in $(seq 1 "$NODES"); do node_down "$n"; done
	stop kube-scheduler
	stop kube-controller-manager
	stop kube-apiserver
	stop etcd
	ip link del "$BR" 2>/dev/null || true
	if [ -f "$TB/sysctls" ]; then
		sed 's/ = /=/' "$TB/sysctls" | while read -r kv; do sysctl -qw "$kv"; done
		log "restored $(tr '\n' ' ' <"$TB/sysctls")"
		rm -f "$TB/sysctls"
	fi
	rm -rf "$TB/etcd" "$RUN"
	log "down"
}

# import TAR...: docker-archive images into every node's containerd.
import_images() {
	local n t
	for n in $(seq 1 "$NODES"); do
		for t in "$@"; do
			ctr -a "$RUN/n$n/containerd.sock" -n k8s.io images import "$t" >/dev/null
		done
	done
	log "imported $* on $NODES nodes"
}

status() {
	[ -f "$RUN/kube-apiserver.pid" ] && kill -0 "$(cat "$RUN/kube-apiserver.pid")" 2>/dev/null &&
		"$BIN/kubectl" --kubeconfig "$TB/kubeconfig" get nodes
}

case ${1:-} in
up) up ;;
down) down ;;
status) status ;;
import)
	shift
	import_images "$@"
	;;
node-stop | node-start)
	[[ ${2:-} =~ ^kubetb-n([0-9]+)$ ]] && [ "${BASH_REMATCH[1]}" -ge 1 ] && [ "${BASH_REMATCH[1]}" -le "$NODES" ] ||
		{ echo "$0 $1: give a node, kubetb-n1 to kubetb-n$NODES" >&2; exit 2; }
	if [ "$1" = node-stop ]; then
		node_kill "${BASH_REMATCH[1]}"
		log "$2 stopped (kubelet, containerd, pods)"
	else
		node_up "${BASH_REMATCH[1]}"
		log "$2 started"
	fi
	;;
env) echo "export KUBECONFIG=$TB/kubeconfig PATH=$BIN:\$PATH" ;;
*)
	echo "usage: $0 up|down|status|env|import TAR...|node-stop NODE|node-start NODE" >&2
	exit 2
	;;
esac
