package topology

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"cloonix/internal/netem"
	"cloonix/internal/proto"
)

// MaxFile bounds a topology file; a lab description is a few kilobytes.
const MaxFile = 1 << 20

// maxDepth bounds element nesting (TOPOLOGY > VM > eth > vlan is 4).
const maxDepth = 8

// maxErrors stops collecting after this many problems.
const maxErrors = 20

// Limits checked on values before anything reaches the switch: the
// switch's own (internal/proto), so a file accepted here is one it takes.
const (
	MaxEths = proto.MaxEths
	MinMem  = proto.MinMem // MB
	MaxMem  = proto.MaxMem // MB
	MaxCPU  = proto.MaxCPU
)

// Error is one problem in a file: where, and what.
type Error struct {
	File string
	Line int
	Msg  string // starts with the element, e.g. `VM "R1": eth2 names lan "" (empty)`
}

func (e *Error) Error() string { return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg) }

// Errors is every problem found in one file; Parse returns all of them so
// a user fixes a file in one pass.
type Errors []*Error

func (es Errors) Error() string {
	s := make([]string, len(es))
	for i, e := range es {
		s[i] = e.Error()
	}
	return strings.Join(s, "\n")
}

// ParseFile reads and checks a topology file.
func ParseFile(path string) (*Topology, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("topology file: %v", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFile+1))
	if err != nil {
		return nil, fmt.Errorf("topology file %s: %v", path, err)
	}
	return Parse(path, data)
}

// node is one element with the line where its start tag ends.
type node struct {
	name     string
	line     int
	text     bytes.Buffer
	textLine int // line of the first non-blank text
	kids     []*node
}

// tree turns the XML into nodes, refusing anything but plain elements,
// text and comments.
func tree(file string, data []byte) (*node, *Error) {
	if len(data) > MaxFile {
		return nil, &Error{file, 1, fmt.Sprintf("file is larger than %d bytes; a topology is a few kilobytes", MaxFile)}
	}
	dec := xml.NewDecoder(bytes.NewReader(data))
	dec.Strict = true
	var root *node
	var stack []*node
	for {
		line, _ := dec.InputPos()
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			var se *xml.SyntaxError
			if errors.As(err, &se) {
				return nil, &Error{file, se.Line, "not well-formed XML: " + se.Msg}
			}
			return nil, &Error{file, line, "not well-formed XML: " + err.Error()}
		}
		line, _ = dec.InputPos()
		switch t := tok.(type) {
		case xml.StartElement:
			if t.Name.Space != "" {
				return nil, &Error{file, line, fmt.Sprintf("<%s:%s>: namespaces are not used in topology files", t.Name.Space, t.Name.Local)}
			}
			if len(t.Attr) > 0 {
				return nil, &Error{file, line, fmt.Sprintf("<%s %s=...>: attributes are not used in topology files; write <%s> value </%s> inside", t.Name.Local, t.Attr[0].Name.Local, t.Attr[0].Name.Local, t.Attr[0].Name.Local)}
			}
			if len(stack) >= maxDepth {
				return nil, &Error{file, line, fmt.Sprintf("<%s>: elements nested deeper than %d", t.Name.Local, maxDepth)}
			}
			n := &node{name: t.Name.Local, line: line}
			if len(stack) == 0 {
				if root != nil {
					return nil, &Error{file, line, fmt.Sprintf("<%s> after </%s>: a file holds one <TOPOLOGY>", t.Name.Local, root.name)}
				}
				root = n
			} else {
				p := stack[len(stack)-1]
				p.kids = append(p.kids, n)
			}
			stack = append(stack, n)
		case xml.EndElement:
			stack = stack[:len(stack)-1]
		case xml.CharData:
			if len(stack) == 0 {
				if len(bytes.TrimSpace(t)) != 0 {
					return nil, &Error{file, line, fmt.Sprintf("text %q outside <TOPOLOGY>", clip(string(bytes.TrimSpace(t))))}
				}
				continue
			}
			n := stack[len(stack)-1]
			if n.textLine == 0 && len(bytes.TrimSpace(t)) != 0 {
				n.textLine = line - bytes.Count(bytes.TrimLeft(t, " \t\r\n"), []byte("\n"))
			}
			if n.text.Len()+len(t) > MaxFile {
				return nil, &Error{file, line, "text too long"}
			}
			n.text.Write(t)
		case xml.Comment, xml.ProcInst:
			// <?xml ...?> and comments are allowed anywhere.
		case xml.Directive:
			return nil, &Error{file, line, "<!...> directives (DOCTYPE, entities) are not accepted in topology files"}
		}
	}
	if root == nil {
		return nil, &Error{file, 1, "no <TOPOLOGY> element (is this a topology file?)"}
	}
	return root, nil
}

func clip(s string) string {
	if len(s) > 30 {
		return s[:30] + "..."
	}
	return s
}

// parser collects errors while interpreting the tree.
type parser struct {
	file string
	errs Errors
}

func (p *parser) errf(line int, format string, a ...any) {
	if len(p.errs) < maxErrors {
		p.errs = append(p.errs, &Error{p.file, line, fmt.Sprintf(format, a...)})
	}
}

// leaf returns the trimmed text of an element that must hold only text.
func (p *parser) leaf(ctx string, n *node) (string, bool) {
	if len(n.kids) > 0 {
		p.errf(n.kids[0].line, "%s<%s> holds <%s>; it takes a value only", ctx, n.name, n.kids[0].name)
		return "", false
	}
	return strings.TrimSpace(n.text.String()), true
}

// noText refuses text inside a container element (a value outside its tag).
func (p *parser) noText(ctx string, n *node) {
	if s := strings.TrimSpace(n.text.String()); s != "" {
		p.errf(n.textLine, "%stext %q inside <%s>; values go inside their own element (e.g. <name> ... </name>)", ctx, clip(s), n.name)
	}
}

func (p *parser) integer(ctx string, n *node, lo, hi int) (int, bool) {
	s, ok := p.leaf(ctx, n)
	if !ok {
		return 0, false
	}
	v, err := strconv.Atoi(s)
	if err != nil || v < lo || v > hi {
		p.errf(n.line, "%s<%s> is %q; give a whole number from %d to %d", ctx, n.name, s, lo, hi)
		return 0, false
	}
	return v, true
}

func (p *parser) position(ctx string, n *node) *int {
	v, ok := p.integer(ctx, n, -1000000, 1000000)
	if !ok {
		return nil
	}
	return &v
}

// bothXY: a position is <x> and <y> together (the switch keeps pairs).
func (p *parser) bothXY(ctx string, n *node, x, y *int) {
	if (x == nil) != (y == nil) {
		p.errf(n.line, "%sgive both <x> and <y>, or neither", ctx)
	}
}

// once reports a second occurrence of a single-valued element.
func (p *parser) once(ctx string, seen map[string]bool, n *node) bool {
	k := strings.ToLower(n.name)
	if seen[k] {
		p.errf(n.line, "%s<%s> given twice", ctx, n.name)
		return false
	}
	seen[k] = true
	return true
}

// Parse checks a whole topology file and returns it, or every problem
// found (an Errors), each naming file, line and element. Nothing is
// returned half-checked.
func Parse(file string, data []byte) (*Topology, error) {
	root, e := tree(file, data)
	if e != nil {
		return nil, Errors{e}
	}
	p := &parser{file: file}
	t := &Topology{File: file}
	if !strings.EqualFold(root.name, "TOPOLOGY") {
		p.errf(root.line, "<%s>: the file must start with <TOPOLOGY>", root.name)
		return nil, p.errs
	}
	// The seed's own sample writes "..." for "more VMs here"; accept it.
	if s := strings.TrimSpace(root.text.String()); s != "" && strings.Trim(s, ".… \t\r\n") != "" {
		p.noText("", root)
	}
	seen := map[string]bool{}
	for _, n := range root.kids {
		switch strings.ToLower(n.name) {
		case "config_path":
			if p.once("", seen, n) {
				if s, ok := p.leaf("", n); ok {
					t.ConfigPath = s
					p.checkConfigPath(n, s)
				}
			}
		case "vm":
			if v, ok := p.vm(n); ok {
				t.VMs = append(t.VMs, v)
			}
		case "tux":
			if x, ok := p.tux(n); ok {
				t.Tux = append(t.Tux, x)
			}
		case "lan":
			if l, ok := p.lan(n); ok {
				t.Lans = append(t.Lans, l)
			}
		default:
			p.errf(n.line, "<%s> inside <TOPOLOGY>: unknown element; known: <config_path>, <VM>, <TUX>, <LAN>", n.name)
		}
	}
	p.unique(t)
	p.after(t)
	if len(p.errs) > 0 {
		return nil, p.errs
	}
	return t, nil
}

// after checks that each <after> names a VM written before it, which
// also keeps boot orders free of cycles.
func (p *parser) after(t *Topology) {
	before := map[string]bool{}
	for _, v := range t.VMs {
		for _, a := range v.After {
			if !before[a] {
				p.errf(v.Line, "VM %q: <after> %s: no VM %q earlier in the file (a VM boots after VMs written before it)", v.Name, a, a)
			}
		}
		before[v.Name] = true
	}
}

func (p *parser) checkConfigPath(n *node, s string) {
	if s == "" {
		p.errf(n.line, "<config_path> is empty; write . for the topology file's folder")
		return
	}
	if strings.HasPrefix(s, "/") {
		p.errf(n.line, "<config_path> %q is absolute; give a path inside the topology file's folder (usually .)", s)
		return
	}
	for _, part := range strings.Split(s, "/") {
		if part == ".." {
			p.errf(n.line, "<config_path> %q leaves the topology file's folder; give a path inside it (usually .)", s)
			return
		}
	}
	for _, r := range s {
		if r < ' ' || r == 0x7f {
			p.errf(n.line, "<config_path> %q has a control character", s)
			return
		}
	}
}

// name reads and checks a <name>.
func (p *parser) name(kind string, n *node) string {
	s, ok := p.leaf(kind+" ", n)
	if !ok {
		return ""
	}
	if err := proto.CheckName(kind, s); err != nil {
		p.errf(n.line, "<%s> <name>: %v", kind, err)
		return ""
	}
	return s
}

func (p *parser) vm(n *node) (VM, bool) {
	v := VM{Line: n.line}
	nerr := len(p.errs)
	// The name first, so every later message can say which VM.
	for _, k := range n.kids {
		if strings.EqualFold(k.name, "name") {
			v.Name = p.name("VM", k)
			break
		}
	}
	ctx := "<VM>: "
	if v.Name != "" {
		ctx = fmt.Sprintf("VM %q: ", v.Name)
	}
	p.noText(ctx, n)
	seen := map[string]bool{}
	names, rootfsLine := 0, n.line
	for _, k := range n.kids {
		if !strings.EqualFold(k.name, "name") {
			p.vmField(ctx, k, &v, seen, &rootfsLine)
		} else if names++; names > 1 {
			p.errf(k.line, "%s<name> given twice", ctx)
		}
	}
	if names == 0 {
		p.errf(n.line, "<VM> has no <name>")
	}
	p.vmChecks(ctx, n, &v, rootfsLine)
	return v, len(p.errs) == nerr
}

// k8sNodeName is a Kubernetes node name: a DNS subdomain.
var k8sNodeName = regexp.MustCompile(`^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$`)

// vmField parses element k of a VM other than its name into v; the line
// of <rootfs> goes to rootfsLine.
func (p *parser) vmField(ctx string, k *node, v *VM, seen map[string]bool, rootfsLine *int) {
	switch strings.ToLower(k.name) {
	case "type":
		if s, ok := p.leaf(ctx, k); ok && p.once(ctx, seen, k) {
			switch strings.ToLower(s) {
			case "kvm":
				v.Type = "kvm"
			case "uml":
				v.Type = "uml"
			case "cnt":
				v.Type = "cnt"
			default:
				p.errf(k.line, "%s<type> is %q; use KVM (QEMU) or UML (CNT for containers)", ctx, s)
			}
		}
	case "mem":
		if x, ok := p.integer(ctx, k, MinMem, MaxMem); ok && p.once(ctx, seen, k) {
			v.Mem = x
		}
	case "cpu":
		if x, ok := p.integer(ctx, k, 1, MaxCPU); ok && p.once(ctx, seen, k) {
			v.CPU = x
		}
	case "rootfs":
		if s, ok := p.leaf(ctx, k); ok && p.once(ctx, seen, k) {
			v.Rootfs = s
			*rootfsLine = k.line
		}
	case "kernel":
		if s, ok := p.leaf(ctx, k); ok && p.once(ctx, seen, k) {
			if err := proto.CheckName("kernel", s); err != nil {
				p.errf(k.line, "%s<kernel>: %v (a kernel file name in bulk_dir)", ctx, err)
			}
			v.Kernel = s
		}
	case "transport":
		if s, ok := p.leaf(ctx, k); ok && p.once(ctx, seen, k) {
			s = strings.ToLower(s)
			if s != "bess" && s != "daemon" {
				p.errf(k.line, "%s<transport> is %q; use bess or daemon (UML eth transport)", ctx, s)
			}
			v.Transport = s
		}
	case "mgmt_ip":
		if s, ok := p.leaf(ctx, k); ok && p.once(ctx, seen, k) {
			if a, err := netip.ParseAddr(s); err != nil || !a.Is4() {
				p.errf(k.line, "%s<mgmt_ip> is %q; want an IPv4 address in the management network", ctx, s)
			}
			v.MgmtIP = s
		}
	case "k8s_node":
		if s, ok := p.leaf(ctx, k); ok && p.once(ctx, seen, k) {
			if !k8sNodeName.MatchString(s) {
				p.errf(k.line, "%s<k8s_node> is %q; want a Kubernetes node name (lower-case letters, digits, '-' and '.', at most 253)", ctx, s)
			}
			v.K8sNode = s
		}
	case "state", "disk_file":
		p.vmLifecycle(ctx, k, v, seen) // lifecycle.go
	case "after":
		if s, ok := p.leaf(ctx, k); ok {
			if err := proto.CheckName("vm", s); err != nil {
				p.errf(k.line, "%s<after>: %v", ctx, err)
			}
			v.After = append(v.After, s)
		}
	case "eth":
		v.Eths = append(v.Eths, p.eth(ctx, len(v.Eths), k))
	case "x":
		if p.once(ctx, seen, k) {
			v.X = p.position(ctx, k)
		}
	case "y":
		if p.once(ctx, seen, k) {
			v.Y = p.position(ctx, k)
		}
	default:
		p.errf(k.line, "%s<%s>: unknown element; a VM takes <name>, <type>, <mem>, <cpu>, <rootfs>, <kernel>, <transport>, <mgmt_ip>, <k8s_node>, <after>, <state>, <disk_file>, <eth>, <x>, <y>", ctx, k.name)
	}
}

// vmChecks checks what spans a VM's elements; rootfsLine is its
// <rootfs>'s line.
func (p *parser) vmChecks(ctx string, n *node, v *VM, rootfsLine int) {
	p.bothXY(ctx, n, v.X, v.Y)
	// A container node's rootfs may also be a path or an image
	// reference (oci:/dir, docker:IMAGE): its kind checks it when added.
	if v.Rootfs != "" && v.Type != "cnt" {
		if err := proto.CheckName("rootfs", v.Rootfs); err != nil {
			p.errf(rootfsLine, "%s<rootfs>: %v (an image name in bulk_dir, without .img)", ctx, err)
		}
	} else if strings.ContainsAny(v.Rootfs, "\x00\n\r\t") || strings.TrimSpace(v.Rootfs) != v.Rootfs {
		p.errf(rootfsLine, "%s<rootfs> %q: control characters or spaces at an end", ctx, v.Rootfs)
	}
	if v.Type == "uml" && v.CPU > 1 {
		p.errf(n.line, "%s<cpu> %d with <type> UML: UML guests have one CPU; drop <cpu> or use KVM", ctx, v.CPU)
	}
	if len(v.Eths) > MaxEths {
		p.errf(n.line, "%s%d <eth>; the limit is %d", ctx, len(v.Eths), MaxEths)
	}
}

func (p *parser) eth(ctx string, i int, n *node) Eth {
	e := Eth{Line: n.line}
	ectx := fmt.Sprintf("%seth %d ", ctx, i)
	p.noText(ectx, n)
	seen := map[string]bool{}
	for _, k := range n.kids {
		switch strings.ToLower(k.name) {
		case "vlan":
			s, ok := p.leaf(ectx, k)
			if !ok {
				continue
			}
			if s == "" {
				p.errf(k.line, "%seth %d names lan \"\" (empty)", ctx, i)
				continue
			}
			if err := proto.CheckName("lan", s); err != nil {
				p.errf(k.line, "%seth %d: %v", ctx, i, err)
				continue
			}
			if contains(e.Lans, s) {
				p.errf(k.line, "%seth %d names lan %q twice", ctx, i, s)
				continue
			}
			e.Lans = append(e.Lans, s)
		case "impair":
			if s, ok := p.leaf(ectx, k); ok && p.once(ectx, seen, k) {
				e.Impair = p.impair(ectx, k, s)
			}
		case "link":
			if s, ok := p.leaf(ectx, k); ok && p.once(ectx, seen, k) {
				e.Link = p.link(ectx, k, s)
			}
		default:
			p.errf(k.line, "%seth %d: <%s> unknown; an <eth> takes <vlan> (any number), <impair> and <link>", ctx, i, k.name)
		}
	}
	return e
}

// impair checks an <impair> with the switch's own rules (netem) and
// returns its canonical text, so a running lab and a file compare equal
// however the file spells it.
func (p *parser) impair(ctx string, n *node, s string) string {
	pair, err := netem.Parse(s)
	if err != nil {
		p.errf(n.line, "%s<impair> %q: %v (settings: %s; optional in/out sections)", ctx, s, err, netem.Keys)
		return ""
	}
	return pair.String()
}

func (p *parser) lan(n *node) (Lan, bool) {
	l := Lan{Line: n.line}
	nerr := len(p.errs)
	p.noText("<LAN>: ", n)
	seen := map[string]bool{}
	for _, k := range n.kids {
		ctx := "<LAN>: "
		if l.Name != "" {
			ctx = fmt.Sprintf("LAN %q: ", l.Name)
		}
		switch strings.ToLower(k.name) {
		case "name":
			if p.once(ctx, seen, k) {
				l.Name = p.name("LAN", k)
			}
		case "x":
			if p.once(ctx, seen, k) {
				l.X = p.position(ctx, k)
			}
		case "y":
			if p.once(ctx, seen, k) {
				l.Y = p.position(ctx, k)
			}
		default:
			p.errf(k.line, "%s<%s>: unknown element; a LAN takes <name>, <x>, <y>", ctx, k.name)
		}
	}
	if !seen["name"] {
		p.errf(n.line, "<LAN> has no <name>")
	}
	p.bothXY(fmt.Sprintf("LAN %q: ", l.Name), n, l.X, l.Y)
	return l, len(p.errs) == nerr
}

// unique reports names given twice.
func (p *parser) unique(t *Topology) {
	vms := map[string]int{}
	for _, v := range t.VMs {
		if l, dup := vms[v.Name]; dup {
			p.errf(v.Line, "VM %q: a second VM with this name (the first is at line %d)", v.Name, l)
		}
		vms[v.Name] = v.Line
	}
	tux := map[string]int{}
	for _, x := range t.Tux {
		if l, dup := tux[x.Name]; dup {
			p.errf(x.Line, "TUX %q: a second TUX with this name (the first is at line %d)", x.Name, l)
		}
		tux[x.Name] = x.Line
	}
	lans := map[string]int{}
	for _, l := range t.Lans {
		if first, dup := lans[l.Name]; dup {
			p.errf(l.Line, "LAN %q: given twice (the first is at line %d)", l.Name, first)
		}
		lans[l.Name] = l.Line
	}
}

func contains(s []string, x string) bool {
	for _, y := range s {
		if y == x {
			return true
		}
	}
	return false
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
