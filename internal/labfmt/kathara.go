package labfmt

import (
	"bufio"
	"bytes"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"cloonix/internal/proto"
	"cloonix/internal/topology"
)

// kathara reads Kathará lab folders (kathara-lab.conf(5),
// kathara-lab.dep(5), kathara-lab-dirs(7)). Written here because no Go
// library reads them.
type kathara struct{}

func (kathara) name() string { return "kathara" }

func (kathara) detect(path string, st os.FileInfo) string {
	if st.IsDir() {
		if fi, err := os.Stat(filepath.Join(path, "lab.conf")); err == nil && fi.Mode().IsRegular() {
			return filepath.Join(path, "lab.conf")
		}
		return ""
	}
	if filepath.Base(path) == "lab.conf" {
		return path
	}
	return ""
}

// katharaOptions are the device options Kathará knows; those mapped are
// handled in option, the others are reported once as ignored.
var katharaOptions = map[string]bool{
	"image": true, "mem": true, "cpus": true, "port": true, "bridged": true, "ipv6": true,
	"exec": true, "sysctl": true, "env": true,
	"shell": false, "num_terms": false, "privileged": false, "ulimit": false,
	"entrypoint": false, "args": false, "volume": false,
}

// kdev is one device while lab.conf is read.
type kdev struct {
	node    *Node
	bridged bool
	ipv6    bool
	sysctls []string
	env     []string
	execs   []string
}

type kparser struct {
	file    string
	opt     Options
	lab     *Lab
	devs    map[string]*kdev
	errs    errList
	ignored map[string]bool
}

func (k kathara) parse(file string, opt Options) (*Lab, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", file, err)
	}
	lab, devs, err := parseLabConf(file, data, opt)
	if err != nil {
		return nil, err
	}
	dir := filepath.Dir(file)
	if err := katharaFolder(lab, devs, dir); err != nil {
		return nil, err
	}
	if dep, err := os.ReadFile(filepath.Join(dir, "lab.dep")); err == nil {
		if err := parseLabDep(lab, filepath.Join(dir, "lab.dep"), dep); err != nil {
			return nil, err
		}
	}
	if lab.Nodes, err = bootOrder(lab.Nodes, filepath.Join(dir, "lab.dep")); err != nil {
		return nil, err
	}
	return lab, nil
}

// parseLabConf reads lab.conf's text. Boot scripts are made later, by
// katharaFolder, which knows which startup files exist.
func parseLabConf(file string, data []byte, opt Options) (*Lab, map[string]*kdev, error) {
	p := &kparser{file: file, opt: opt, lab: &Lab{Src: file}, devs: map[string]*kdev{}, ignored: map[string]bool{}}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for ln := 1; sc.Scan(); ln++ {
		p.line(ln, strings.TrimSpace(sc.Text()))
	}
	if err := sc.Err(); err != nil {
		p.errs.add("%s: %v", file, err)
	}
	if len(p.lab.Nodes) == 0 && len(p.errs) == 0 {
		p.errs.add("%s: no device (write lines such as r1[0]=A)", file)
	}
	if err := p.errs.err(); err != nil {
		return nil, nil, err
	}
	p.finish()
	if err := p.errs.err(); err != nil {
		return nil, nil, err
	}
	return p.lab, p.devs, nil
}

func (p *kparser) line(ln int, s string) {
	if s == "" || strings.HasPrefix(s, "#") {
		return
	}
	at := fmt.Sprintf("%s:%d", p.file, ln)
	key, value, ok := strings.Cut(s, "=")
	if !ok {
		p.errs.add("%s: %q is not DEVICE[ARG]=VALUE nor LAB_FIELD=VALUE", at, s)
		return
	}
	value = unquote(strings.TrimSpace(value))
	key = strings.TrimSpace(key)
	open := strings.IndexByte(key, '[')
	if open < 0 {
		if strings.HasPrefix(key, "LAB_") {
			p.lab.Meta = append(p.lab.Meta, [2]string{key, value})
			if key == "LAB_NAME" {
				p.lab.Name = value
			}
			return
		}
		p.errs.add("%s: %q: a device line is DEVICE[ARG]=VALUE; metadata names start with LAB_", at, key)
		return
	}
	if !strings.HasSuffix(key, "]") {
		p.errs.add("%s: %q: missing ] after the argument", at, key)
		return
	}
	name, arg := key[:open], strings.TrimSpace(key[open+1:len(key)-1])
	if err := proto.CheckName("device", name); err != nil {
		p.errs.add("%s: %v", at, err)
		return
	}
	d := p.dev(name, ln)
	if n, err := strconv.Atoi(arg); err == nil {
		p.eth(at, d, name, n, value)
		return
	}
	mapped, known := katharaOptions[arg]
	switch {
	case !known:
		p.errs.add("%s: %s[%s]: eth index %q is not a number (nor a Kathará option: image, mem, cpus, port, bridged, ipv6, exec, sysctl, env, ...)", at, name, arg, arg)
	case !mapped:
		if !p.ignored[arg] {
			p.ignored[arg] = true
			p.lab.Warnings = append(p.lab.Warnings, fmt.Sprintf("%s: option %q is not supported by cloonix; ignored (here and on any other line)", at, arg))
		}
	default:
		p.option(at, d, arg, value)
	}
}

func unquote(v string) string {
	if len(v) >= 2 && (v[0] == '"' && v[len(v)-1] == '"' || v[0] == '\'' && v[len(v)-1] == '\'') {
		return v[1 : len(v)-1]
	}
	return v
}

func (p *kparser) dev(name string, ln int) *kdev {
	if d := p.devs[name]; d != nil {
		return d
	}
	n := &Node{Name: name, Eths: map[int]string{}, NatEth: -1, Line: ln}
	d := &kdev{node: n}
	p.devs[name] = d
	p.lab.Nodes = append(p.lab.Nodes, n)
	return d
}

func (p *kparser) eth(at string, d *kdev, name string, i int, value string) {
	if i < 0 || i >= topology.MaxEths {
		p.errs.add("%s: %s[%d]: eth index out of range 0..%d", at, name, i, topology.MaxEths-1)
		return
	}
	lan, mac, _ := strings.Cut(value, "/")
	if mac != "" {
		p.lab.Warnings = append(p.lab.Warnings, fmt.Sprintf("%s: %s[%d]: MAC address %s ignored (cloonix chooses MACs)", at, name, i, mac))
	}
	if err := proto.CheckName("collision domain", lan); err != nil {
		p.errs.add("%s: %s[%d]: %v", at, name, i, err)
		return
	}
	if old, ok := d.node.Eths[i]; ok {
		p.errs.add("%s: %s[%d]: eth%d is already on %q", at, name, i, i, old)
		return
	}
	d.node.Eths[i] = lan
}

func (p *kparser) option(at string, d *kdev, arg, value string) {
	n := d.node
	switch arg {
	case "image":
		n.Image = value
	case "mem":
		mb, err := parseMem(value)
		if err != nil {
			p.errs.add("%s: %s[mem]: %v", at, n.Name, err)
		}
		n.Mem = mb
	case "cpus":
		f, err := strconv.ParseFloat(value, 64)
		if err != nil || f <= 0 || f > topology.MaxCPU {
			p.errs.add("%s: %s[cpus]: %q is not a positive number of CPUs", at, n.Name, value)
			return
		}
		n.CPU = int(math.Ceil(f))
	case "port":
		pt, err := parsePort(value)
		if err != nil {
			p.errs.add("%s: %s[port]: %v", at, n.Name, err)
			return
		}
		n.Ports = append(n.Ports, pt)
	case "bridged", "ipv6":
		b, err := strconv.ParseBool(value)
		if err != nil {
			p.errs.add("%s: %s[%s]: %q is not true or false", at, n.Name, arg, value)
			return
		}
		if arg == "bridged" {
			d.bridged = b
		} else {
			d.ipv6 = b
		}
	case "exec":
		d.execs = append(d.execs, value)
	case "sysctl":
		k, v, ok := strings.Cut(value, "=")
		if !ok || !strings.HasPrefix(strings.TrimSpace(k), "net.") || strings.ContainsAny(k, " \t'\"") {
			p.errs.add("%s: %s[sysctl]: %q: give net.KEY=VALUE (Kathará allows only the net. namespace)", at, n.Name, value)
			return
		}
		d.sysctls = append(d.sysctls, strings.TrimSpace(k)+"="+strings.TrimSpace(v))
	case "env":
		k, _, ok := strings.Cut(value, "=")
		if !ok || k == "" || strings.ContainsAny(k, " \t'\"=$") {
			p.errs.add("%s: %s[env]: %q: give NAME=VALUE", at, n.Name, value)
			return
		}
		d.env = append(d.env, value)
	}
}

// parseMem reads Kathará's mem: a number with b, k, m or g (docker's
// units; a bare number is bytes).
func parseMem(v string) (int, error) {
	s := strings.ToLower(strings.TrimSpace(v))
	mul := 1.0 / (1 << 20)
	if s != "" {
		switch s[len(s)-1] {
		case 'b':
			s = s[:len(s)-1]
		case 'k':
			mul, s = 1.0/(1<<10), s[:len(s)-1]
		case 'm':
			mul, s = 1, s[:len(s)-1]
		case 'g':
			mul, s = 1<<10, s[:len(s)-1]
		}
	}
	x, err := strconv.ParseFloat(s, 64)
	if err != nil || x <= 0 || math.IsInf(x, 0) {
		return 0, fmt.Errorf("%q: give a size such as 256m or 1g", v)
	}
	mb := int(math.Ceil(x * mul))
	if mb < topology.MinMem || mb > topology.MaxMem {
		return 0, fmt.Errorf("%q is %d MB; cloonix needs %d..%d", v, mb, topology.MinMem, topology.MaxMem)
	}
	return mb, nil
}

// parsePort reads [HOST:]GUEST[/PROTOCOL] (kathara-vstart(1)); a lone
// port is forwarded from the same host port.
func parsePort(v string) (Port, error) {
	pt := Port{Proto: "tcp"}
	s, proto, ok := strings.Cut(v, "/")
	if ok {
		proto = strings.ToLower(proto)
		if proto != "tcp" && proto != "udp" {
			return pt, fmt.Errorf("%q: protocol %q; use tcp or udp", v, proto)
		}
		pt.Proto = proto
	}
	host, guest, two := strings.Cut(s, ":")
	if !two {
		guest = host
	}
	var err error
	if pt.HostPort, err = portNum(host); err != nil {
		return pt, fmt.Errorf("%q: %v (give [HOST:]GUEST[/tcp|udp])", v, err)
	}
	if pt.GuestPort, err = portNum(guest); err != nil {
		return pt, fmt.Errorf("%q: %v (give [HOST:]GUEST[/tcp|udp])", v, err)
	}
	return pt, nil
}

func portNum(s string) (int, error) {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil || n < 1 || n > 65535 {
		return 0, fmt.Errorf("port %q is not 1..65535", s)
	}
	return n, nil
}

// finish maps images and places the nat eth of bridged devices.
func (p *kparser) finish() {
	unknown := map[string]bool{}
	for _, n := range p.lab.Nodes {
		d := p.devs[n.Name]
		if n.Image == "" {
			n.Image = "kathara/base"
		}
		r, known, _ := mapImage(n.Image, p.opt.Images)
		n.Rootfs = r
		if !known && !unknown[n.Image] {
			unknown[n.Image] = true
			p.lab.Warnings = append(p.lab.Warnings, fmt.Sprintf("%s: image %s is not in the image map; running it as %s (map it with --image %s=ROOTFS or <image_map>)", p.file, n.Image, r, n.Image))
		}
		// Kathará's bridged interface comes after the lab's ones; a port
		// needs it.
		if d.bridged || len(n.Ports) > 0 {
			n.NatEth = 0
			for i := range n.Eths {
				if i >= n.NatEth {
					n.NatEth = i + 1
				}
			}
			if n.NatEth >= topology.MaxEths {
				p.errs.add("%s: %s: no eth left for bridged (the limit is %d)", p.file, n.Name, topology.MaxEths)
			}
		}
	}
	p.lab.assignNat(&p.errs)
}

// katharaFolder adds the devices' folders, shared/ and startup files,
// and writes each device's boot script.
func katharaFolder(lab *Lab, devs map[string]*kdev, dir string) error {
	shared := filepath.Join(dir, "shared")
	hasShared := false
	if fi, err := os.Lstat(shared); err == nil {
		if !fi.IsDir() {
			return fmt.Errorf("%s: must be a folder (it is mounted at /shared)", shared)
		}
		if err := topology.CheckTree(shared); err != nil {
			return err
		}
		hasShared = true
	}
	sharedStartup, err := startupFile(dir, "shared.startup")
	if err != nil {
		return err
	}
	names := map[string]bool{}
	for _, n := range lab.Nodes {
		names[n.Name] = true
		tree := filepath.Join(dir, n.Name)
		if fi, err := os.Lstat(tree); err == nil && fi.IsDir() {
			if err := topology.CheckTree(tree); err != nil {
				return err
			}
			n.Trees = append(n.Trees, tree)
		}
		if hasShared {
			n.Files = append(n.Files, File{Guest: "/shared", Src: shared})
		}
		startup, err := startupFile(dir, n.Name+".startup")
		if err != nil {
			return err
		}
		var scripts []string
		if sharedStartup != "" {
			n.Files = append(n.Files, File{Guest: "/etc/cloonix-lab/shared.startup", Src: sharedStartup, Mode: 0o755})
			scripts = append(scripts, "/etc/cloonix-lab/shared.startup")
		}
		if startup != "" {
			g := "/etc/cloonix-lab/" + n.Name + ".startup"
			n.Files = append(n.Files, File{Guest: g, Src: startup, Mode: 0o755})
			scripts = append(scripts, g)
		}
		n.Boot = katharaBoot(lab, n, devs[n.Name], scripts)
	}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		base := strings.TrimSuffix(e.Name(), ".startup")
		if (e.IsDir() && e.Name() != "shared" && !strings.HasPrefix(e.Name(), "_") && !strings.HasPrefix(e.Name(), ".") ||
			strings.HasSuffix(e.Name(), ".startup") && base != "shared") && !names[base] {
			lab.Warnings = append(lab.Warnings, fmt.Sprintf("%s: no device %q in lab.conf; not used", filepath.Join(dir, e.Name()), base))
		}
	}
	sort.Strings(lab.Warnings)
	return nil
}

func startupFile(dir, name string) (string, error) {
	p := filepath.Join(dir, name)
	fi, err := os.Lstat(p)
	if err != nil {
		return "", nil
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("%s: must be a regular file (a shell script run at boot)", p)
	}
	return p, nil
}

// katharaBoot is a device's boot script: what Kathará does when it
// starts a container (rp_filter off, IPv6 off unless asked, sysctls), then
// shared.startup and DEV.startup with the device shell, then exec lines.
func katharaBoot(lab *Lab, n *Node, d *kdev, scripts []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "#!/bin/sh\n# Written by cloonix from the Kathará lab %s: device %s.\n", lab.Src, n.Name)
	b.WriteString("case \"$1\" in stop) exit 0;; esac\n")
	b.WriteString("for f in /proc/sys/net/ipv4/conf/*/rp_filter; do echo 0 > \"$f\"; done\n")
	if !d.ipv6 {
		b.WriteString("sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1\n")
	}
	for _, s := range d.sysctls {
		fmt.Fprintf(&b, "sysctl -qw %s\n", shellQuote(s))
	}
	b.WriteString(natScript(n))
	for _, e := range d.env {
		fmt.Fprintf(&b, "export %s\n", shellQuote(e))
	}
	b.WriteString("SH=/bin/sh; [ -x /bin/bash ] && SH=/bin/bash\ncd /\n")
	for _, s := range scripts {
		fmt.Fprintf(&b, "$SH %s\n", s)
	}
	for _, e := range d.execs {
		fmt.Fprintf(&b, "$SH -c %s\n", shellQuote(e))
	}
	b.WriteString("exit 0\n")
	return b.String()
}

// parseLabDep reads lab.dep: "DEV: DEV1 DEV2" lines; DEV boots once
// DEV1 and DEV2 are ready.
func parseLabDep(lab *Lab, file string, data []byte) error {
	var errs errList
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for ln := 1; sc.Scan(); ln++ {
		s := strings.TrimSpace(sc.Text())
		if s == "" || strings.HasPrefix(s, "#") {
			continue
		}
		lhs, rhs, ok := strings.Cut(s, ":")
		if !ok {
			errs.add("%s:%d: %q: write DEVICE: DEVICE1 DEVICE2 ...", file, ln, s)
			continue
		}
		for _, name := range strings.Fields(lhs) {
			n := lab.Node(name)
			if n == nil {
				errs.add("%s:%d: no device %q in lab.conf", file, ln, name)
				continue
			}
			for _, dep := range strings.Fields(rhs) {
				switch {
				case lab.Node(dep) == nil:
					errs.add("%s:%d: %s depends on %q, which is not a device of lab.conf", file, ln, name, dep)
				case dep == name:
					errs.add("%s:%d: %s depends on itself", file, ln, name)
				default:
					n.After = appendOnce(n.After, dep)
				}
			}
		}
	}
	return errs.err()
}

func appendOnce(s []string, x string) []string {
	for _, y := range s {
		if y == x {
			return s
		}
	}
	return append(s, x)
}
