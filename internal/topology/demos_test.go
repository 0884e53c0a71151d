package topology

import (
	"os"
	"path/filepath"
	"testing"
)

// TestShippedDemos: every folder under demos/ loads without error or
// warning, and names only images that `cloonix bulk build` makes.
func TestShippedDemos(t *testing.T) {
	dirs, err := filepath.Glob("../../demos/*")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, dir := range dirs {
		if _, err := os.Stat(filepath.Join(dir, TopologyName)); err != nil {
			continue
		}
		n++
		t.Run(filepath.Base(dir), func(t *testing.T) {
			d, err := Load(dir)
			if err != nil {
				t.Fatal(err)
			}
			if len(d.Warnings) > 0 {
				t.Errorf("warnings: %q", d.Warnings)
			}
			if d.Dir == "" {
				t.Errorf("no demo files found")
			}
			for _, v := range d.Topology.VMs {
				if v.Rootfs != "busybox" && v.Rootfs != "debian-frr" {
					t.Errorf("VM %s: rootfs %q is not one of the built images", v.Name, v.Rootfs)
				}
			}
		})
	}
	for _, want := range []string{"lan_rule", "ospf"} {
		if _, err := os.Stat(filepath.Join("../../demos", want, TopologyName)); err != nil {
			t.Errorf("demos/%s is missing", want)
		}
	}
	if n == 0 {
		t.Fatal("no demos found")
	}
}
