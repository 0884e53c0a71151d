package main

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"cloonix/internal/proto"
	"cloonix/internal/topology"
)

// fconf save --with-disks DIR: a portable lab. DIR gets the topology,
// the demo files the guests were added with, and disks/ with each
// guest's disk (as `ctrl save vm`); `fconf load DIR` on any switch boots
// every guest from its saved disk.

var fconfWithDisks bool

func saveWithDisks(c *proto.Client, dir string, out io.Writer) error {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	if ents, err := os.ReadDir(dir); err == nil && len(ents) > 0 {
		return fmt.Errorf("%s is not empty; give a new or empty folder", dir)
	}
	lab, err := c.List()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(dir, topology.DisksDir), 0o755); err != nil {
		return err
	}
	t := topology.FromLab(lab)
	for i, v := range lab.VMs {
		ext := ".img" // UML: a raw filesystem image
		switch v.Type {
		case "kvm":
			ext = ".qcow2"
		case "cnt":
			ext = ".tar" // a docker-archive (docs/containers.md)
		}
		file := filepath.Join(dir, topology.DisksDir, v.Name+ext)
		fmt.Fprintf(out, "saving %s's disk to %s\n", v.Name, file)
		if _, err := saveVM(c, v.Name, file, out); err != nil {
			return err
		}
		tv := t.VM(v.Name)
		tv.Disk, tv.Rootfs = v.Name+ext, ""
		if err := copyDemo(lab.VMs[i], dir, out); err != nil {
			return err
		}
	}
	if err := t.WriteFile(filepath.Join(dir, topology.TopologyName)); err != nil {
		return err
	}
	fmt.Fprintf(out, "saved %d VMs with their disks, %d tux, %d lans to %s (load it with `cloonix fconf load %s`)\n", len(t.VMs), len(t.Tux), len(lab.Lans), dir, dir)
	return nil
}

// copyDemo copies what v's demo folder gives it (its own tree, and the
// shared tree and delete file unless already copied) into dir.
func copyDemo(v proto.VM, dir string, out io.Writer) error {
	if v.Demo == "" {
		return nil
	}
	for _, name := range []string{topology.TargetPrefix + v.Name, topology.AllTargets, topology.DeleteName} {
		src, dst := filepath.Join(v.Demo, name), filepath.Join(dir, name)
		if _, err := os.Lstat(src); err != nil {
			continue
		}
		if _, err := os.Lstat(dst); err == nil {
			continue // shared, copied for an earlier VM
		}
		// cp -a keeps modes and symlinks as links, as the CD does.
		if b, err := exec.Command("cp", "-a", "--", src, dst).CombinedOutput(); err != nil {
			return fmt.Errorf("copying %s: %v: %s", src, err, strings.TrimSpace(string(b)))
		}
		fmt.Fprintf(out, "copied %s\n", name)
	}
	return nil
}
