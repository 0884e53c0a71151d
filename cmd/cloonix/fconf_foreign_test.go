package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"cloonix/internal/labfmt"
)

// withConfig points the commands at a config whose work_dir is a
// temporary folder, and resets the fconf flags afterwards.
func withConfig(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.xml")
	os.WriteFile(cfg, []byte("<cloonix_config><work_dir>"+dir+"</work_dir><image_map><image> kathara/base = busybox </image></image_map></cloonix_config>"), 0o600)
	old := rootOpts.config
	rootOpts.config = cfg
	t.Cleanup(func() { rootOpts.config = old })
	return dir
}

func TestLoadDemoForeign(t *testing.T) {
	work := withConfig(t)
	o := fconfOptions{plan: true}
	var out bytes.Buffer
	demo, err := loadDemo("../../demos/kathara_ospf", &out, o)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "LAB_AUTHOR: cloonix") || demo.Topology.VM("pc1") == nil {
		t.Errorf("plan:\n%s", out.String())
	}
	// A plan changes nothing: no converted folder is written.
	if m, _ := filepath.Glob(filepath.Join(work, "labs", "kathara-*")); len(m) != 0 {
		t.Errorf("--plan wrote %v", m)
	}
	o.plan = false
	if demo, err = loadDemo("../../demos/kathara_ospf", &out, o); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(demo.Dir, filepath.Join(work, "labs", "kathara-ospf_stub-")) {
		t.Errorf("converted into %s", demo.Dir)
	}
	// <image_map> from the config applies; --image wins over it.
	if v := demo.Topology.VM("pc1"); v.Rootfs != "busybox" || v.Type != labfmt.DefaultAs() {
		t.Errorf("pc1 %+v", v)
	}
	o.images, o.as = []string{"kathara/base=other"}, "kvm"
	demo, err = loadDemo("../../demos/kathara_ospf", &out, o)
	if err != nil {
		t.Fatal(err)
	}
	if v := demo.Topology.VM("pc1"); v.Rootfs != "other" || v.Type != "kvm" {
		t.Errorf("pc1 with --image and --as %+v", v)
	}
}

func TestLoadDemoFlagsNeedForeign(t *testing.T) {
	withConfig(t)
	if _, err := loadDemo("../../demos/ospf", &bytes.Buffer{}, fconfOptions{as: "cnt"}); err == nil || !strings.Contains(err.Error(), "--as and --image apply to Kathará and containerlab labs only") {
		t.Errorf("got %v", err)
	}
	if _, err := loadDemo("../../demos/kathara_ospf", &bytes.Buffer{}, fconfOptions{images: []string{"nonsense"}}); err == nil || !strings.Contains(err.Error(), "give IMAGE=ROOTFS") {
		t.Errorf("got %v", err)
	}
}
