#!/bin/sh
# ospf-ring.sh N DIR [K8SNODE_ODD K8SNODE_EVEN]: writes a demo folder DIR
# of N debian-frr cnt routers in a ring (Ri's eth0 and R(i+1)'s eth1 share
# lan li, 10.100.i.0/24 when N < 255), each with loopback 192.168.0.i/32,
# running zebra and ospfd from their rc.d. With the two Kubernetes node
# names, odd routers are pinned to the first and even ones to the second
# (<k8s_node>), so every lan spans both. Converged: each router has N-1
# OSPF routes to the others' loopbacks.
set -eu
n=$1 dir=$2 odd=${3:-} even=${4:-}
[ "$n" -ge 3 ] && [ "$n" -le 254 ] || { echo "ospf-ring.sh: N is 3 to 254" >&2; exit 1; }
mkdir -p "$dir"
top=$dir/topology
echo "<TOPOLOGY>" > "$top"
echo "rm -f /etc/frr/frr.conf" > "$dir/files_to_delete_from_all_targets"
mkdir -p "$dir/files_to_add_in_all_targets/etc/frr"
cat > "$dir/files_to_add_in_all_targets/etc/frr/daemons" <<'D'
zebra=yes
ospfd=yes
staticd=no
vtysh_enable=yes
zebra_options="  -A 127.0.0.1 -s 90000000"
ospfd_options="  -A 127.0.0.1"
D
i=1
while [ "$i" -le "$n" ]; do
	prev=$(( i == 1 ? n : i - 1 ))
	pin=
	if [ -n "$odd" ]; then
		if [ $((i % 2)) = 1 ]; then pin="<k8s_node> $odd </k8s_node>"; else pin="<k8s_node> $even </k8s_node>"; fi
	fi
	cat >> "$top" <<X
  <VM> <name> R$i </name> <type> cnt </type> <rootfs> debian-frr </rootfs> $pin
    <eth> <vlan> l$i </vlan> </eth> <eth> <vlan> l$prev </vlan> </eth> </VM>
X
	d=$dir/files_to_add_in_R$i/etc
	mkdir -p "$d/rc.d" "$d/frr"
	cat > "$d/rc.d/S80_ospf" <<X
#!/bin/sh
case "\$1" in stop) exit 0;; esac
ip link set eth0 up; ip addr replace 10.100.$i.1/24 dev eth0
ip link set eth1 up; ip addr replace 10.100.$prev.2/24 dev eth1
ip addr replace 192.168.0.$i/32 dev lo
sysctl -qw net.ipv4.ip_forward=1
/usr/lib/frr/frrinit.sh restart
X
	chmod 755 "$d/rc.d/S80_ospf"
	cat > "$d/frr/frr.conf" <<X
frr defaults traditional
hostname R$i
service integrated-vtysh-config
!
interface eth0
 ip ospf network point-to-point
 ip ospf hello-interval 1
 ip ospf dead-interval 4
!
interface eth1
 ip ospf network point-to-point
 ip ospf hello-interval 1
 ip ospf dead-interval 4
!
router ospf
 ospf router-id 192.168.0.$i
 network 10.100.0.0/16 area 0
 network 192.168.0.$i/32 area 0
!
X
	i=$((i + 1))
done
echo "</TOPOLOGY>" >> "$top"
