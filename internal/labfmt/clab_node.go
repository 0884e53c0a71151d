package labfmt

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"cloonix/internal/topology"
)

// clabNode keeps what the boot script needs beyond Node.
type clabNode struct {
	kind    string
	env     [][2]string
	sysctls [][2]string
	exec    []string
	waitFor []*yaml.Node
}

// node merges a node's settings as containerlab does (node, then its
// group, then its kind, then defaults: the first that sets a value wins;
// env and sysctls merge key by key, binds by destination; exec and
// wait-for add up, defaults' first) and maps it.
func (p *cparser) node(name string, key *yaml.Node, d, defaults *ndef, kinds, groups map[string]*ndef, bridges map[string]bool) {
	levels := []*ndef{d}
	if d.group != "" {
		g := groups[d.group]
		if g == nil {
			p.errAt(key, "node %s: group %q is not under topology.groups", name, d.group)
			return
		}
		levels = append(levels, g)
	}
	kind := first(levels, defaults, func(x *ndef) string { return x.kind })
	if kind == "" {
		p.errAt(key, "node %s has no kind (set kind on the node, its group or topology.defaults)", name)
		return
	}
	if k := kinds[kind]; k != nil {
		levels = append(levels, k)
	}
	levels = append(levels, defaults)
	image := first(levels, nil, func(x *ndef) string { return x.image })
	if kind == "bridge" {
		bridges[name] = true
		return
	}
	n := &Node{Name: name, Image: image, Eths: map[int]string{}, NatEth: 0, Line: key.Line}
	r, known, userMapped := mapImage(image, p.opt.Images)
	if image == "" {
		r, known = FallbackRootfs, kind == "linux" || kind == "frr"
	}
	n.Rootfs = r
	switch {
	case kind == "linux" || kind == "frr" || userMapped:
	default:
		p.errAt(key, "node %s: kind %q is not supported (cloonix runs kinds linux, frr and bridge); map its image with --image %s=ROOTFS or <image_map> to run it as a Linux node", name, kind, orDash(image))
		return
	}
	if !known {
		p.warnAt(key, "node %s: image %s is not in the image map; running it as %s (map it with --image %s=ROOTFS or <image_map>)", name, image, r, image)
	}
	cn := &clabNode{kind: kind}
	for i := len(levels) - 1; i >= 0; i-- {
		cn.exec = append(cn.exec, levels[i].exec...)
		cn.waitFor = append(cn.waitFor, levels[i].waitFor...)
	}
	cn.env = mergeKV(levels, func(x *ndef) [][2]string { return x.env })
	cn.sysctls = mergeKV(levels, func(x *ndef) [][2]string { return x.sysctls })
	p.resources(n, levels)
	p.startupConfig(n, kind, levels)
	p.binds(n, levels)
	p.ports(n, levels)
	p.lab.Nodes = append(p.lab.Nodes, n)
	p.extra[n] = cn
}

func first(levels []*ndef, last *ndef, f func(*ndef) string) string {
	for _, l := range levels {
		if v := f(l); v != "" {
			return v
		}
	}
	if last != nil {
		return f(last)
	}
	return ""
}

// mergeKV merges maps, the first level winning, in first-seen order.
func mergeKV(levels []*ndef, f func(*ndef) [][2]string) [][2]string {
	seen := map[string]bool{}
	var out [][2]string
	for _, l := range levels {
		for _, kv := range f(l) {
			if !seen[kv[0]] {
				seen[kv[0]] = true
				out = append(out, kv)
			}
		}
	}
	return out
}

func (p *cparser) resources(n *Node, levels []*ndef) {
	for _, l := range levels {
		if l.memory != nil && n.Mem == 0 {
			mb, err := parseMem(strings.TrimSuffix(strings.ToLower(l.memory.Value), "b"))
			if err != nil {
				p.errAt(l.memory, "node %s: memory: %v", n.Name, err)
			}
			n.Mem = mb
		}
		if l.cpu != nil && n.CPU == 0 {
			f, err := strconv.ParseFloat(l.cpu.Value, 64)
			if err != nil || f <= 0 || f > topology.MaxCPU {
				p.errAt(l.cpu, "node %s: cpu %q is not a positive number", n.Name, l.cpu.Value)
				continue
			}
			n.CPU = int(f + 0.999)
		}
	}
}

// hostPath resolves a path of the topology (relative to its folder, ~
// for the home folder).
func (p *cparser) hostPath(s string) string {
	if strings.HasPrefix(s, "~/") {
		if h, err := os.UserHomeDir(); err == nil {
			s = filepath.Join(h, s[2:])
		}
	}
	return relTo(p.file, s)
}

func (p *cparser) startupConfig(n *Node, kind string, levels []*ndef) {
	var sc *yaml.Node
	var daemons *ndef
	for _, l := range levels {
		if sc == nil && l.startupConfig != nil {
			sc = l.startupConfig
		}
		if daemons == nil && l.hasDaemons {
			daemons = l
		}
	}
	if kind != "frr" {
		if sc != nil {
			p.warnAt(sc, "node %s: startup-config is used for kind frr only; ignored for kind %s (use binds)", n.Name, kind)
		}
		return
	}
	if sc != nil {
		if strings.Contains(sc.Value, "\n") {
			// containerlab takes a multi-line value as the config itself.
			n.Files = append(n.Files, File{Guest: "/etc/frr/frr.conf", Data: []byte(sc.Value), Mode: 0o640})
		} else {
			src := p.hostPath(sc.Value)
			if fi, err := os.Stat(src); err != nil || !fi.Mode().IsRegular() {
				p.errAt(sc, "node %s: startup-config %s: no such file (paths are relative to the topology's folder)", n.Name, src)
			} else {
				n.Files = append(n.Files, File{Guest: "/etc/frr/frr.conf", Src: src})
			}
		}
	}
	if daemons != nil {
		n.Files = append(n.Files, File{Guest: "/etc/frr/daemons", Data: daemonsFile(daemons.daemons, false), Mode: 0o640})
	} else {
		n.Files = append(n.Files, File{Guest: "/etc/frr/daemons", Data: daemonsFile(nil, true), Mode: 0o640})
	}
}

// binds copies host files in; a bind of a nearer level replaces one of
// a farther level with the same destination.
func (p *cparser) binds(n *Node, levels []*ndef) {
	var out []File
	dest := map[string]bool{}
	for _, l := range levels {
		for _, b := range l.binds {
			parts := strings.Split(b.Value, ":")
			if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || !strings.HasPrefix(parts[1], "/") {
				p.errAt(b, "node %s: bind %q: write HOST_PATH:/NODE_PATH[:ro|rw]", n.Name, b.Value)
				continue
			}
			g := filepath.Clean(parts[1])
			if dest[g] {
				continue
			}
			dest[g] = true
			src := p.hostPath(parts[0])
			fi, err := os.Stat(src)
			if err != nil {
				p.errAt(b, "node %s: bind %s: no such file or folder (paths are relative to the topology's folder)", n.Name, src)
				continue
			}
			if fi.IsDir() {
				if err := topology.CheckTree(src); err != nil {
					p.errAt(b, "node %s: bind: %v", n.Name, err)
					continue
				}
			} else if !fi.Mode().IsRegular() {
				p.errAt(b, "node %s: bind %s: not a file or folder", n.Name, src)
				continue
			}
			out = append(out, File{Guest: g, Src: src})
		}
	}
	// The farthest level first, so nearer ones are written last.
	for i := len(out) - 1; i >= 0; i-- {
		n.Files = append(n.Files, out[i])
	}
}

func (p *cparser) ports(n *Node, levels []*ndef) {
	for _, l := range levels {
		if len(l.ports) == 0 {
			continue
		}
		for _, x := range l.ports {
			pt, err := parsePort(x.Value)
			if err != nil {
				p.errAt(x, "node %s: ports: %v", n.Name, err)
				continue
			}
			n.Ports = append(n.Ports, pt)
		}
		return
	}
}

// clabBoot is a node's boot script: eth0 on the nat (containerlab's
// management interface), sysctls, env, FRR for kind frr, then exec.
func (p *cparser) clabBoot(n *Node, cn *clabNode) string {
	var b strings.Builder
	fmt.Fprintf(&b, "#!/bin/sh\n# Written by cloonix from the containerlab topology %s: node %s.\n", p.file, n.Name)
	b.WriteString("case \"$1\" in stop) exit 0;; esac\n")
	b.WriteString(natScript(n))
	for _, s := range cn.sysctls {
		fmt.Fprintf(&b, "sysctl -qw %s\n", shellQuote(s[0]+"="+s[1]))
	}
	for _, e := range cn.env {
		fmt.Fprintf(&b, "export %s\n", shellQuote(e[0]+"="+e[1]))
	}
	if cn.kind == "frr" {
		// The frr unit may already run (its files came before it started).
		b.WriteString("if [ -d /run/systemd/system ]; then systemctl start frr.service; else /usr/lib/frr/frrinit.sh start; fi\n")
	}
	b.WriteString("cd /\n")
	for _, e := range cn.exec {
		fmt.Fprintf(&b, "/bin/sh -c %s\n", shellQuote(e))
	}
	b.WriteString("exit 0\n")
	return b.String()
}

// links reads topology.links: the brief form (endpoints: ["a:eth1",
// "b:eth1"]) and the extended form (type: veth, endpoints as node and
// interface). A link becomes a lan named after its two ends; an end on a
// bridge node puts the other end on the lan named after the bridge.
func (p *cparser) links(n *yaml.Node, bridges map[string]bool) {
	if n.Kind != yaml.SequenceNode {
		p.errAt(n, "links must be a list")
		return
	}
	for _, l := range n.Content {
		var eps *yaml.Node
		typ := ""
		for _, kv := range p.pairs(l, "link") {
			switch kv[0].Value {
			case "endpoints":
				eps = kv[1]
			case "type":
				typ = p.scalar(kv[1], "link type")
				if typ != "veth" {
					p.errAt(kv[1], "link type %q is not supported (cloonix reads veth links)", typ)
				}
			case "mtu", "vars", "labels":
			default:
				p.errAt(kv[0], "link: unknown key %q (endpoints, type, mtu, vars, labels)", kv[0].Value)
			}
		}
		if eps == nil {
			p.errAt(l, "link has no endpoints")
			continue
		}
		if eps.Kind != yaml.SequenceNode || len(eps.Content) != 2 {
			p.errAt(eps, "endpoints must list two ends")
			continue
		}
		var ends [2]end
		before := len(p.errs)
		for i, e := range eps.Content {
			ends[i] = p.endpoint(e, typ != "")
		}
		if len(p.errs) > before {
			continue
		}
		p.link(eps, ends, bridges)
	}
}

// end is one end of a link.
type end struct {
	node, ifname string
	at           *yaml.Node
}

func (p *cparser) endpoint(e *yaml.Node, extended bool) end {
	if e.Kind == yaml.MappingNode {
		var x end
		x.at = e
		for _, kv := range p.pairs(e, "endpoint") {
			switch kv[0].Value {
			case "node":
				x.node = p.scalar(kv[1], "endpoint node")
			case "interface":
				x.ifname = p.scalar(kv[1], "endpoint interface")
			case "mac":
			default:
				p.errAt(kv[0], "endpoint: unknown key %q (node, interface, mac)", kv[0].Value)
			}
		}
		return x
	}
	node, ifname, ok := strings.Cut(e.Value, ":")
	if !ok || extended {
		p.errAt(e, "endpoint %q: write NODE:INTERFACE (or node:/interface: in a typed link)", e.Value)
	}
	return end{node: node, ifname: ifname, at: e}
}

func (p *cparser) link(eps *yaml.Node, ends [2]end, bridges map[string]bool) {
	var idx [2]int
	for i, e := range ends {
		if bridges[e.node] {
			idx[i] = -1
			continue
		}
		nd := p.lab.Node(e.node)
		if nd == nil {
			p.errAt(e.at, "endpoint %s:%s names node %q, which is not under topology.nodes", e.node, e.ifname, e.node)
			return
		}
		num, err := strconv.Atoi(strings.TrimPrefix(e.ifname, "eth"))
		if !strings.HasPrefix(e.ifname, "eth") || err != nil || num < 0 || num >= topology.MaxEths {
			p.errAt(e.at, "endpoint %s:%s: cloonix nodes have interfaces eth1..eth%d", e.node, e.ifname, topology.MaxEths-1)
			return
		}
		if num == 0 {
			p.errAt(e.at, "endpoint %s:eth0: eth0 is containerlab's management interface (on cloonix's nat); use eth1 and up", e.node)
			return
		}
		if _, used := nd.Eths[num]; used {
			p.errAt(e.at, "endpoint %s:%s is already on another link", e.node, e.ifname)
			return
		}
		idx[i] = num
	}
	var lan string
	switch {
	case idx[0] < 0 && idx[1] < 0:
		p.errAt(eps, "a link between two bridges (%s, %s) is not supported", ends[0].node, ends[1].node)
		return
	case idx[0] < 0:
		lan = ends[0].node
	case idx[1] < 0:
		lan = ends[1].node
	default:
		lan = fmt.Sprintf("%s_%s-%s_%s", ends[0].node, ends[0].ifname, ends[1].node, ends[1].ifname)
		if len(lan) > 64 {
			p.errAt(eps, "the lan name %s is over 64 bytes; use shorter node names", lan)
			return
		}
	}
	for i, e := range ends {
		if idx[i] >= 0 {
			p.lab.Node(e.node).Eths[idx[i]] = lan
		}
	}
}
