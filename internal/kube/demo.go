package kube

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"cloonix/internal/machine/cnt"
	"cloonix/internal/topology"
)

// A lab node's demo files reach its pod as a local cnt node's do: a
// ConfigMap named as the pod, mounted at /.cloonix, holds cnt's init, its
// systemctl shim, the demo's delete commands and the node's trees.tar
// (files_to_add_in_all_targets, then files_to_add_in_NODE). The pod's
// shell waits for the switch to add its eths, then runs that init: delete
// commands, trees, sysctl.d, /etc/rc.d/S* in order.

// maxConfigMap bounds a node's ConfigMap: the API takes at most 1 MiB.
const maxConfigMap = 900 << 10

// nodeConfigMap is the ConfigMap of lab node n, owned by the lab.
func nodeConfigMap(lab *Lab, node string, data map[string]string, bin map[string][]byte) obj {
	return obj{
		"apiVersion": "v1", "kind": "ConfigMap",
		"metadata": obj{
			"name":      PodName(lab.Metadata.Name, node),
			"namespace": lab.Metadata.Namespace,
			"labels":    obj{LabelLab: lab.Metadata.Name, LabelNode: node},
			"ownerReferences": []obj{{
				"apiVersion": Group + "/" + Version, "kind": "Lab", "name": lab.Metadata.Name,
				"uid": lab.Metadata.UID, "controller": true, "blockOwnerDeletion": true,
			}},
		},
		"data":       data,
		"binaryData": bin,
	}
}

// demoFiles is what node's /.cloonix holds: the files as text, trees.tar
// as binary. dir is the demo folder ("" when there is none).
func demoFiles(dir, node string) (map[string]string, map[string][]byte, error) {
	data := map[string]string{"init": cnt.InitScript, "systemctl": cnt.SystemctlShim, "delete.sh": ""}
	bin := map[string][]byte{}
	if dir == "" {
		return data, bin, nil
	}
	if b, err := os.ReadFile(filepath.Join(dir, topology.DeleteName)); err == nil {
		data["delete.sh"] = string(b)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, nil, err
	}
	var trees []string
	for _, t := range []string{topology.AllTargets, topology.TargetPrefix + node} {
		p := filepath.Join(dir, t)
		if _, err := os.Lstat(p); err == nil {
			trees = append(trees, p)
		}
	}
	if len(trees) == 0 {
		return data, bin, nil
	}
	var buf bytes.Buffer
	if err := cnt.WriteTrees(&buf, trees); err != nil {
		return nil, nil, fmt.Errorf("node %s: %v", node, err)
	}
	size := buf.Len()
	for _, s := range data {
		size += len(s)
	}
	if size > maxConfigMap {
		return nil, nil, fmt.Errorf("node %s: its demo files make %d KiB; a pod gets them in a ConfigMap, at most %d KiB: make %s smaller",
			node, size>>10, maxConfigMap>>10, strings.Join(trees, " and "))
	}
	bin["trees.tar"] = buf.Bytes()
	return data, bin, nil
}

// nodeFiles are one node's /.cloonix files.
type nodeFiles struct {
	data map[string]string
	bin  map[string][]byte
}

// demoConfigs reads every node's files from the demo folder dir, before
// anything is created, so that bad demo files change nothing.
func demoConfigs(dir string, spec LabSpec) (map[string]nodeFiles, error) {
	out := map[string]nodeFiles{}
	for _, n := range spec.Nodes {
		data, bin, err := demoFiles(dir, n.Name)
		if err != nil {
			return nil, err
		}
		out[n.Name] = nodeFiles{data, bin}
	}
	return out, nil
}

// putConfigMaps writes (creates or replaces) the ConfigMap of each node
// of lab.
func (c *Client) putConfigMaps(lab *Lab, files map[string]nodeFiles) error {
	ns := lab.Metadata.Namespace
	for _, n := range lab.Spec.Nodes {
		f := files[n.Name]
		cm := nodeConfigMap(lab, n.Name, f.data, f.bin)
		path := nsPath(ns) + "/configmaps/" + url.PathEscape(PodName(lab.Metadata.Name, n.Name))
		err := c.Do("PUT", path, "", cm, nil)
		if IsNotFound(err) {
			err = c.Do("POST", nsPath(ns)+"/configmaps", "", cm, nil)
		}
		if err != nil {
			return fmt.Errorf("node %s: its ConfigMap: %w", n.Name, err)
		}
	}
	return nil
}

// netSysctls makes the pod's /proc/sys/net writable, as a local cnt
// node's is (bundle.go), the rest of /proc/sys staying read-only: the
// container runtime mounts all of /proc/sys read-only, so a router's
// sysctl.d or `sysctl -w net.ipv4.ip_forward=1` would fail. /proc/sys/net
// shows the pod's own network namespace; the pod's CAP_SYS_ADMIN allows
// the bind mount. Where a security module forbids it (AppArmor's default
// container profile) the node starts anyway, and says so.
const netSysctls = "{ mount --bind /proc/sys/net /proc/sys/net && mount -o remount,bind,rw /proc/sys/net; } 2>/dev/null ||\n" +
	"  echo 'cloonix: /proc/sys/net stays read-only (mount refused): no sysctl -w net.* here' >&2\n"

// nodeStart is the pod's shell: it makes /proc/sys/net writable, waits
// until the switch has given each eth its MAC and set it up (the network plugin's eth0 is renamed k8s0
// first), so that rc.d scripts find their eths as on a local node, then
// runs cnt's init, whose "ready" on fd 3 goes to the file the readiness
// probe reads.
func nodeStart(n LabNode) string {
	var b strings.Builder
	b.WriteString("trap 'exit 0' TERM\n")
	b.WriteString(netSysctls)
	for i, e := range n.Eths {
		s := fmt.Sprintf("/sys/class/net/eth%d/", i)
		fmt.Fprintf(&b, "until [ \"$(cat %saddress 2>/dev/null)\" = %s ] && [ $(( $(cat %sflags) & 1 )) = 1 ]; do sleep 1; done\n",
			s, strings.ToLower(e.MAC), s)
	}
	b.WriteString("exec /bin/sh /.cloonix/init 3>" + readyFile + "\n")
	return b.String()
}

// readyFile gets "ready" once the node's rc.d scripts have run.
const readyFile = "/.cloonix-ready"
