package cnt

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"cloonix/internal/topology"
)

// The node's pid 1. It does in the container what a VM's agent does at
// boot, in the same order (DESIGN section 4): the demo's delete commands,
// its files, the ssh key, then /etc/rc.d/S* in order; then it tells the
// switch on fd 3 that the node is ready and waits, reaping orphans (the
// shell's wait collects any child). A shell rather than an agent binary:
// every rootfs has /bin/sh, and it costs about 1 MB per node.
const initScript = `# cloonix container init (pid 1 of a container node)
cd /
C=/.cloonix
[ -s $C/delete.sh ] && /bin/sh $C/delete.sh 3>&-
[ -s $C/trees.tar ] && tar -x -p -f $C/trees.tar -C / 3>&-
if [ -s $C/authorized_key ]; then
	mkdir -p /root/.ssh && chmod 700 /root/.ssh
	grep -qxF -f $C/authorized_key /root/.ssh/authorized_keys 2>/dev/null || cat $C/authorized_key >> /root/.ssh/authorized_keys
	chmod 600 /root/.ssh/authorized_keys
fi
hostname > /etc/hostname 2>/dev/null
for f in /etc/sysctl.d/*.conf; do [ -f "$f" ] && sysctl -p "$f" >/dev/null 2>&1 3>&-; done
# What comes in on mgmt0 is never routed on (after sysctl.d, whose
# forwarding=1 turns it on for every interface), as a VM's agent does.
[ -d /proc/sys/net/ipv4/conf/mgmt0 ] && echo 0 > /proc/sys/net/ipv4/conf/mgmt0/forwarding
# sshd, when the rootfs has systemd start it (systemd does not run in a
# node): its missing host keys are made at first start, as debian-frr's
# unit does (internal/bulk); the keys sshd_config names, else all types.
W=/etc/systemd/system/multi-user.target.wants
if [ -x /usr/sbin/sshd ] && [ -e $W/ssh.service -o -e $W/sshd.service ]; then
	mkdir -p /run/sshd && chmod 755 /run/sshd
	K=$(cat /etc/ssh/sshd_config /etc/ssh/sshd_config.d/*.conf 2>/dev/null | sed -n 's/^[[:space:]]*[Hh][Oo][Ss][Tt][Kk][Ee][Yy][[:space:]][[:space:]]*//p')
	if [ -n "$K" ]; then
		for k in $K; do t=${k##*ssh_host_}; [ -f "$k" ] || ssh-keygen -q -t "${t%_key}" -N "" -f "$k" 3>&-; done
	else
		ssh-keygen -A 3>&-
	fi
	/usr/sbin/sshd 3>&-
fi
for s in /etc/rc.d/S*; do
	case "$s" in *~) continue ;; esac
	[ -f "$s" ] || continue
	if [ -x "$s" ]; then "$s" start 3>&-; else /bin/sh "$s" start 3>&-; fi
done
echo ready >&3
exec 3>&-
trap 'exit 0' TERM
while :; do sleep 3600 & wait; done
`

// systemctl for nodes: containers run no systemd (booting it costs
// seconds and memory per node, and needs cgroup mounts this host's hybrid
// cgroups make fragile). The verbs that matter to demo scripts act on
// FRR's own init script (frrinit.sh, which starts the daemons of
// /etc/frr/daemons under watchfrr) and on /etc/init.d scripts; enable,
// disable, daemon-reload and the rest succeed doing nothing.
const systemctlShim = `#!/bin/sh
# systemctl of a cloonix container node (no systemd): see docs/containers.md
verb=
units=
for a in "$@"; do
	case "$a" in
	-*) ;;
	*) if [ -z "$verb" ]; then verb=$a; else units="$units ${a%.service}"; fi ;;
	esac
done
rc=0
for u in $units; do
	case "$verb" in
	start | stop | restart | reload | try-restart | reload-or-restart | status | is-active)
		v=$verb
		case "$v" in try-restart | reload-or-restart) v=restart ;; is-active) v=status ;; esac
		if [ "$u" = frr ] && [ -x /usr/lib/frr/frrinit.sh ]; then
			/usr/lib/frr/frrinit.sh $v || rc=$?
		elif [ -x "/etc/init.d/$u" ]; then
			"/etc/init.d/$u" $v || rc=$?
		else
			echo "systemctl: no service $u in this container node" >&2
			rc=5
		fi
		;;
	esac
done
exit $rc
`

// maxTreeBytes bounds the demo files given to one node.
const maxTreeBytes = 512 << 20

// writeConfig fills the directory mounted at /.cloonix.
func writeConfig(dir string, s *Spec) error {
	files := map[string]string{
		"init":           initScript,
		"systemctl":      systemctlShim,
		"delete.sh":      s.DeleteCmds,
		"authorized_key": strings.TrimSpace(s.SSHKey),
	}
	if files["authorized_key"] != "" {
		files["authorized_key"] += "\n"
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o755); err != nil {
			return err
		}
	}
	if len(s.Trees) == 0 {
		return nil
	}
	f, err := os.OpenFile(filepath.Join(dir, "trees.tar"), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	err = writeTrees(f, s.Trees)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// writeTrees archives demo trees (checked as for VMs: folders, files and
// symlinks only) owned by root, in order: later trees win at extraction.
func writeTrees(w io.Writer, trees []string) error {
	tw := tar.NewWriter(w)
	var total int64
	for _, tree := range trees {
		if err := topology.CheckTree(tree); err != nil {
			return fmt.Errorf("demo files: %v", err)
		}
		err := filepath.WalkDir(tree, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(tree, p)
			if rel == "." {
				return nil
			}
			info, err := d.Info()
			if err != nil {
				return err
			}
			link := ""
			if info.Mode()&fs.ModeSymlink != 0 {
				if link, err = os.Readlink(p); err != nil {
					return err
				}
			}
			h, err := tar.FileInfoHeader(info, link)
			if err != nil {
				return err
			}
			h.Name = filepath.ToSlash(rel)
			h.Uid, h.Gid, h.Uname, h.Gname = 0, 0, "root", "root"
			if err := tw.WriteHeader(h); err != nil {
				return err
			}
			if !info.Mode().IsRegular() {
				return nil
			}
			if total += info.Size(); total > maxTreeBytes {
				return fmt.Errorf("demo files are more than %d MB", maxTreeBytes>>20)
			}
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = io.CopyN(tw, f, info.Size())
			return err
		})
		if err != nil {
			var pe *fs.PathError
			if errors.As(err, &pe) {
				return fmt.Errorf("demo files: %s: %v", pe.Path, pe.Err)
			}
			return fmt.Errorf("demo files in %s: %v", tree, err)
		}
	}
	return tw.Close()
}

// A lab node on Kubernetes (internal/kube) runs the same init and shim
// and gets the same demo trees, from a ConfigMap mounted at /.cloonix.
const (
	InitScript    = initScript
	SystemctlShim = systemctlShim
)

// WriteTrees archives demo trees as a node's trees.tar (see writeTrees).
func WriteTrees(w io.Writer, trees []string) error { return writeTrees(w, trees) }
