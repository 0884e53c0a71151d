package topology

import (
	"path/filepath"
	"strings"

	"cloonix/internal/proto"
)

// The lifecycle extensions of the format (docs/topology.md): a VM's
// <state> and <disk_file>, <link> on an eth or a tux, and <rootfs> as an
// absolute image path (journals, saved guests).

// vmLifecycle reads a VM's <state> or <disk_file>.
func (p *parser) vmLifecycle(ctx string, k *node, v *VM, seen map[string]bool) {
	s, ok := p.leaf(ctx, k)
	if !ok || !p.once(ctx, seen, k) {
		return
	}
	if strings.EqualFold(k.name, "disk_file") {
		if filepath.IsAbs(s) {
			// An image file anywhere (a journal of a guest booted
			// from a saved image).
			if filepath.Clean(s) != s || strings.ContainsAny(s, "\x00\r\n\t") {
				p.errf(k.line, "%s<disk_file> %q: give a clean absolute path", ctx, s)
			}
		} else if err := proto.CheckName("disk", s); err != nil {
			p.errf(k.line, "%s<disk_file>: %v (a file name in the demo folder's %s/, or an absolute path)", ctx, err, DisksDir)
		}
		v.Disk = s
		return
	}
	switch strings.ToLower(s) {
	case "running":
	case "stopped":
		v.State = "stopped"
	default:
		p.errf(k.line, "%s<state> is %q; use running or stopped", ctx, s)
	}
}

// link checks a <link>: up or down; "down" or "" (up) is returned.
func (p *parser) link(ctx string, n *node, s string) string {
	switch strings.ToLower(s) {
	case "up":
		return ""
	case "down":
		return "down"
	}
	p.errf(n.line, "%s<link> is %q; use up or down", ctx, s)
	return ""
}

// stateSteps start a stopped guest the file wants running and stop a
// running one it wants stopped.
func stateSteps(c *proto.VM, v *VM) []Step {
	switch {
	case c.State == "stopped" && v.State != "stopped":
		return []Step{{Op: StartVM, Name: v.Name}}
	case c.State != "stopped" && v.State == "stopped":
		return []Step{{Op: StopVM, Name: v.Name}}
	}
	return nil
}

// linkStep sets a port's link: "down", or up for "".
func linkStep(port, link string, undoable bool) Step {
	if link == "" {
		link = "up"
	}
	return Step{Op: Link, Port: port, Spec: link, Undoable: undoable}
}
