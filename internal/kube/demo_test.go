package kube

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"cloonix/internal/machine/cnt"
)

func TestDemoFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(rel, content string) {
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write("files_to_delete_from_all_targets", "rm -f /etc/motd\n")
	write("files_to_add_in_all_targets/etc/a", "all")
	write("files_to_add_in_A/etc/rc.d/S10x", "A")

	tests := []struct {
		node  string
		files []string // in trees.tar
	}{
		{"A", []string{"etc", "etc/a", "etc", "etc/rc.d", "etc/rc.d/S10x"}}, // all targets first, then A's
		{"B", []string{"etc", "etc/a"}},
	}
	for _, tc := range tests {
		data, bin, err := demoFiles(dir, tc.node)
		if err != nil {
			t.Fatal(err)
		}
		if data["init"] != cnt.InitScript || data["systemctl"] != cnt.SystemctlShim || data["delete.sh"] != "rm -f /etc/motd\n" {
			t.Errorf("%s: data %v", tc.node, data)
		}
		var names []string
		tr := tar.NewReader(bytes.NewReader(bin["trees.tar"]))
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			names = append(names, h.Name)
		}
		if !reflect.DeepEqual(names, tc.files) {
			t.Errorf("%s: trees.tar holds %v, want %v", tc.node, names, tc.files)
		}
	}

	// No demo folder: the init and shim only.
	data, bin, err := demoFiles("", "A")
	if err != nil || len(bin) != 0 || data["delete.sh"] != "" || data["init"] == "" {
		t.Errorf("no demo: %v %v %v", data, bin, err)
	}

	// Too big for a ConfigMap: refused with the reason.
	big := make([]byte, maxConfigMap)
	write("files_to_add_in_C/big", string(big))
	if _, _, err := demoFiles(dir, "C"); err == nil || !strings.Contains(err.Error(), "ConfigMap") {
		t.Errorf("big demo: %v", err)
	}
}

func TestNodeStart(t *testing.T) {
	n := LabNode{Name: "A", Eths: []LabEth{{MAC: "2E:00:00:00:00:01"}, {MAC: "2e:00:00:00:00:02"}}}
	s := nodeStart(n)
	for _, want := range []string{
		`"$(cat /sys/class/net/eth0/address 2>/dev/null)" = 2e:00:00:00:00:01 ]`,
		`/sys/class/net/eth1/flags`,
		"exec /bin/sh /.cloonix/init 3>" + readyFile,
		"mount -o remount,bind,rw /proc/sys/net",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("missing %q in\n%s", want, s)
		}
	}
	if strings.Index(s, "/proc/sys/net") > strings.Index(s, "/.cloonix/init") {
		t.Errorf("/proc/sys/net made writable after the init (its sysctl.d) runs:\n%s", s)
	}
	pod := labPod(&Lab{Metadata: Meta{Name: "l", Namespace: "ns"}}, n)
	vols := pod["spec"].(obj)["volumes"].([]obj)
	if got := vols[0]["configMap"].(obj)["name"]; got != PodName("l", "A") {
		t.Errorf("pod's ConfigMap is %v", got)
	}
	var keys []string
	for k := range nodeConfigMap(&Lab{Metadata: Meta{Name: "l"}}, "A", nil, nil) {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if want := []string{"apiVersion", "binaryData", "data", "kind", "metadata"}; !reflect.DeepEqual(keys, want) {
		t.Errorf("ConfigMap keys %v", keys)
	}
}
