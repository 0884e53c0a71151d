package labfmt

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"

	"cloonix/internal/proto"
)

// clab reads containerlab topologies (containerlab.dev/manual/topo-def-file)
// with yaml.v3's Node API, which keeps lines and columns for messages.
type clab struct{}

func (clab) name() string { return "containerlab" }

func isClabFile(name string) bool {
	return strings.HasSuffix(name, ".clab.yml") || strings.HasSuffix(name, ".clab.yaml")
}

func (clab) detect(path string, st os.FileInfo) string {
	if !st.IsDir() {
		if isClabFile(filepath.Base(path)) {
			return path
		}
		return ""
	}
	m, _ := filepath.Glob(filepath.Join(path, "*.clab.y*ml"))
	var files []string
	for _, f := range m {
		if isClabFile(f) {
			files = append(files, f)
		}
	}
	if len(files) == 1 {
		return files[0]
	}
	return ""
}

// ndef is one level of node settings: defaults, a kind, a group or a node.
type ndef struct {
	at            *yaml.Node // the mapping, for messages
	kind, image   string
	group         string
	startupConfig *yaml.Node
	binds         []*yaml.Node
	exec          []string
	env           [][2]string
	sysctls       [][2]string
	ports         []*yaml.Node
	memory, cpu   *yaml.Node
	daemons       []string
	hasDaemons    bool
	waitFor       []*yaml.Node
}

// clabIgnored are containerlab node keys cloonix accepts and ignores.
var clabIgnored = map[string]bool{
	"type": true, "mgmt-ipv4": true, "mgmt-ipv6": true, "labels": true, "cmd": true, "entrypoint": true,
	"user": true, "network-mode": true, "license": true, "publish": true, "restart-policy": true,
	"image-pull-policy": true, "runtime": true, "stages": true, "healthcheck": true,
	"dns": true, "certificate": true, "cpu-set": true, "shm-size": true, "devices": true, "cap-add": true,
	"aliases": true, "enforce-startup-config": true, "suppress-startup-config": true, "auto-remove": true,
	"startup-delay": true, "config": true, "mgmt-ipv4-address": true, "components": true, "sandbox": true,
}

type cparser struct {
	file    string
	opt     Options
	lab     *Lab
	errs    errList
	ignored map[string]bool
	extra   map[*Node]*clabNode // for the boot scripts
}

func (p *cparser) errAt(n *yaml.Node, format string, a ...any) {
	p.errs.add("%s:%d:%d: %s", p.file, n.Line, n.Column, fmt.Sprintf(format, a...))
}

func (p *cparser) warnAt(n *yaml.Node, format string, a ...any) {
	p.lab.Warnings = append(p.lab.Warnings, fmt.Sprintf("%s:%d:%d: %s", p.file, n.Line, n.Column, fmt.Sprintf(format, a...)))
}

// pairs returns a mapping's keys and values, or reports it is not one.
func (p *cparser) pairs(n *yaml.Node, what string) [][2]*yaml.Node {
	if n.Kind != yaml.MappingNode {
		if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
			return nil
		}
		p.errAt(n, "%s must be a mapping", what)
		return nil
	}
	var out [][2]*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		out = append(out, [2]*yaml.Node{n.Content[i], n.Content[i+1]})
	}
	return out
}

func (p *cparser) scalar(n *yaml.Node, what string) string {
	if n.Kind != yaml.ScalarNode {
		p.errAt(n, "%s must be a single value", what)
		return ""
	}
	return n.Value
}

func (p *cparser) list(n *yaml.Node, what string) []*yaml.Node {
	if n.Kind != yaml.SequenceNode {
		p.errAt(n, "%s must be a list", what)
		return nil
	}
	for _, k := range n.Content {
		if k.Kind != yaml.ScalarNode {
			p.errAt(k, "%s: each item must be a single value", what)
			return nil
		}
	}
	return n.Content
}

func (p *cparser) kv(n *yaml.Node, what string) [][2]string {
	var out [][2]string
	for _, kv := range p.pairs(n, what) {
		out = append(out, [2]string{p.scalar(kv[0], what), p.scalar(kv[1], what+" "+kv[0].Value)})
	}
	return out
}

// ndef reads one level of node settings.
func (p *cparser) ndef(n *yaml.Node, ctx string) *ndef {
	d := &ndef{at: n}
	for _, kv := range p.pairs(n, ctx) {
		k, v := kv[0].Value, kv[1]
		switch k {
		case "kind":
			d.kind = p.scalar(v, ctx+" kind")
		case "image":
			d.image = p.scalar(v, ctx+" image")
		case "group":
			d.group = p.scalar(v, ctx+" group")
		case "startup-config":
			if p.scalar(v, ctx+" startup-config") != "" {
				d.startupConfig = v
			}
		case "binds":
			d.binds = p.list(v, ctx+" binds")
		case "exec":
			for _, e := range p.list(v, ctx+" exec") {
				d.exec = append(d.exec, e.Value)
			}
		case "env":
			d.env = p.kv(v, ctx+" env")
		case "sysctls":
			d.sysctls = p.kv(v, ctx+" sysctls")
		case "ports":
			d.ports = p.list(v, ctx+" ports")
		case "wait-for":
			d.waitFor = p.list(v, ctx+" wait-for")
		case "memory":
			d.memory = v
		case "cpu":
			d.cpu = v
		case "extras":
			p.extras(d, v, ctx)
		default:
			if clabIgnored[k] {
				if !p.ignored[k] {
					p.ignored[k] = true
					p.warnAt(kv[0], "%s: %q is not supported by cloonix; ignored (here and elsewhere)", ctx, k)
				}
				continue
			}
			p.errAt(kv[0], "%s: unknown key %q (cloonix reads kind, image, group, startup-config, binds, exec, env, sysctls, ports, memory, cpu, extras, wait-for)", ctx, k)
		}
	}
	return d
}

// extras reads extras.frr.daemons: the FRR daemons a kind frr node runs.
func (p *cparser) extras(d *ndef, n *yaml.Node, ctx string) {
	for _, kv := range p.pairs(n, ctx+" extras") {
		if kv[0].Value != "frr" {
			continue
		}
		for _, f := range p.pairs(kv[1], ctx+" extras.frr") {
			if f[0].Value != "daemons" {
				p.errAt(f[0], "%s: extras.frr.%s: only daemons is known", ctx, f[0].Value)
				continue
			}
			d.hasDaemons = true
			for _, x := range p.list(f[1], ctx+" extras.frr.daemons") {
				if !frrDaemon[x.Value] {
					p.errAt(x, "%s: extras.frr.daemons: %q is not an FRR daemon (%s)", ctx, x.Value, strings.Join(frrDaemons, ", "))
				}
				d.daemons = append(d.daemons, x.Value)
			}
		}
	}
}

// frrDaemons are the daemons of FRR's /etc/frr/daemons (zebra, mgmtd and
// staticd always run).
var frrDaemons = []string{"bgpd", "ospfd", "ospf6d", "ripd", "ripngd", "isisd", "pimd", "pim6d", "ldpd", "nhrpd", "eigrpd", "babeld", "sharpd", "pbrd", "bfdd", "fabricd", "vrrpd", "pathd"}

var frrDaemon = func() map[string]bool {
	m := map[string]bool{}
	for _, d := range frrDaemons {
		m[d] = true
	}
	return m
}()

func daemonsFile(enabled []string, all bool) []byte {
	on := map[string]bool{}
	for _, d := range enabled {
		on[d] = true
	}
	var b strings.Builder
	b.WriteString("# Written by cloonix for a containerlab kind frr node.\n")
	for _, d := range frrDaemons {
		v := "no"
		if all || on[d] {
			v = "yes"
		}
		fmt.Fprintf(&b, "%s=%s\n", d, v)
	}
	b.WriteString("vtysh_enable=yes\nzebra_options=\"  -A 127.0.0.1 -s 90000000\"\nmgmtd_options=\"  -A 127.0.0.1\"\nstaticd_options=\"-A 127.0.0.1\"\n")
	for _, d := range frrDaemons {
		fmt.Fprintf(&b, "%s_options=\"  -A 127.0.0.1\"\n", d)
	}
	return []byte(b.String())
}

func (c clab) parse(file string, opt Options) (*Lab, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", file, err)
	}
	return parseClab(file, data, opt)
}

func parseClab(file string, data []byte, opt Options) (*Lab, error) {
	p := &cparser{file: file, opt: opt, lab: &Lab{Src: file}, ignored: map[string]bool{}, extra: map[*Node]*clabNode{}}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%s: %v", file, err)
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 {
		return nil, fmt.Errorf("%s: empty; a containerlab topology has a name and a topology section", file)
	}
	var topo *yaml.Node
	for _, kv := range p.pairs(doc.Content[0], "the file") {
		switch kv[0].Value {
		case "name":
			p.lab.Name = p.scalar(kv[1], "name")
		case "topology":
			topo = kv[1]
		case "prefix", "mgmt", "settings":
			p.warnAt(kv[0], "%q is not used by cloonix; ignored", kv[0].Value)
		default:
			p.errAt(kv[0], "unknown key %q (a topology has name, prefix, mgmt, settings, topology)", kv[0].Value)
		}
	}
	if topo == nil && len(p.errs) == 0 {
		p.errs.add("%s: no topology: section", file)
	}
	if topo != nil {
		p.topology(topo)
	}
	if err := p.errs.err(); err != nil {
		return nil, err
	}
	sort.Strings(p.lab.Warnings)
	return p.lab, nil
}

func (p *cparser) topology(n *yaml.Node) {
	var nodes, links *yaml.Node
	defaults := &ndef{}
	kinds := map[string]*ndef{}
	groups := map[string]*ndef{}
	for _, kv := range p.pairs(n, "topology") {
		switch kv[0].Value {
		case "nodes":
			nodes = kv[1]
		case "links":
			links = kv[1]
		case "defaults":
			defaults = p.ndef(kv[1], "defaults")
		case "kinds":
			for _, k := range p.pairs(kv[1], "kinds") {
				kinds[k[0].Value] = p.ndef(k[1], "kind "+k[0].Value)
			}
		case "groups":
			for _, g := range p.pairs(kv[1], "groups") {
				groups[g[0].Value] = p.ndef(g[1], "group "+g[0].Value)
			}
		default:
			p.errAt(kv[0], "topology: unknown key %q (nodes, links, kinds, groups, defaults)", kv[0].Value)
		}
	}
	if nodes == nil {
		p.errAt(n, "topology has no nodes:")
		return
	}
	bridges := map[string]bool{}
	for _, kv := range p.pairs(nodes, "nodes") {
		name := kv[0].Value
		if err := proto.CheckName("node", name); err != nil {
			p.errAt(kv[0], "%v", err)
			continue
		}
		d := p.ndef(kv[1], "node "+name)
		p.node(name, kv[0], d, defaults, kinds, groups, bridges)
	}
	if links != nil {
		p.links(links, bridges)
	}
	p.waitFor()
	p.lab.assignNat(&p.errs)
	for _, nd := range p.lab.Nodes {
		nd.Boot = p.clabBoot(nd, p.extra[nd])
	}
	if len(p.errs) == 0 {
		nodes, err := bootOrder(p.lab.Nodes, p.file+": wait-for")
		if err != nil {
			p.errs.add("%v", err)
		}
		p.lab.Nodes = nodes
	}
}

// waitFor turns wait-for into boot order: a node is added once the
// nodes it waits for are ready.
func (p *cparser) waitFor() {
	for _, n := range p.lab.Nodes {
		for _, w := range p.extra[n].waitFor {
			switch {
			case p.lab.Node(w.Value) == nil:
				p.errAt(w, "node %s: wait-for %q: no such node", n.Name, w.Value)
			case w.Value == n.Name:
				p.errAt(w, "node %s waits for itself", n.Name)
			default:
				n.After = appendOnce(n.After, w.Value)
			}
		}
	}
}
