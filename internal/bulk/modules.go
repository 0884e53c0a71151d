package bulk

import (
	"bufio"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
)

// kernelInfo describes the Debian kernel booted by QEMU.
type kernelInfo struct {
	Release string // e.g. 6.1.0-56-amd64
	Pkg     string // the linux-image-RELEASE package
	PkgVer  string
	Vmlinuz string
	ModDir  string
}

// umlInfo describes /usr/bin/linux.uml.
type umlInfo struct {
	Release string // e.g. 6.1.176
	PkgVer  string
	ModDir  string
}

// debianKernel finds the kernel that linux-image-amd64 depends on.
func debianKernel() (*kernelInfo, error) {
	out, err := exec.Command("dpkg-query", "-W", "-f=${Depends}", "linux-image-amd64").Output()
	if err != nil {
		return nil, fmt.Errorf("linux-image-amd64 is not installed (apt-get install linux-image-amd64)")
	}
	pkg := ""
	for _, d := range strings.Split(string(out), ",") {
		d = strings.TrimSpace(d)
		if f := strings.Fields(d); len(f) > 0 && strings.HasPrefix(f[0], "linux-image-") {
			pkg = f[0]
			break
		}
	}
	if pkg == "" {
		return nil, fmt.Errorf("linux-image-amd64 depends on no linux-image package (%q)", out)
	}
	rel := strings.TrimPrefix(pkg, "linux-image-")
	rel = strings.TrimSuffix(rel, "-unsigned")
	k := &kernelInfo{Release: rel, Pkg: pkg, PkgVer: pkgVersion(pkg), Vmlinuz: "/boot/vmlinuz-" + rel, ModDir: "/lib/modules/" + rel}
	for _, p := range []string{k.Vmlinuz, filepath.Join(k.ModDir, "modules.dep")} {
		if _, err := os.Stat(p); err != nil {
			return nil, fmt.Errorf("kernel %s: %v (reinstall %s)", rel, err, pkg)
		}
	}
	return k, nil
}

// umlKernel finds linux.uml and its modules.
func umlKernel() (*umlInfo, error) {
	out, err := exec.Command("/usr/bin/linux.uml", "--version").Output()
	if err != nil {
		return nil, fmt.Errorf("/usr/bin/linux.uml --version: %v (apt-get install user-mode-linux)", err)
	}
	rel := strings.TrimSpace(string(out))
	if f := strings.Fields(rel); len(f) > 0 {
		rel = f[len(f)-1]
	}
	u := &umlInfo{Release: rel, PkgVer: pkgVersion("user-mode-linux"), ModDir: "/usr/lib/uml/modules/" + rel}
	if _, err := os.Stat(filepath.Join(u.ModDir, "modules.dep")); err != nil {
		return nil, fmt.Errorf("UML modules for %s: %v (reinstall user-mode-linux)", rel, err)
	}
	return u, nil
}

// modDep reads modDir/modules.dep: relative module path -> its deps.
func modDep(modDir string) (map[string][]string, map[string]string, error) {
	f, err := os.Open(filepath.Join(modDir, "modules.dep"))
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	deps := map[string][]string{}
	byName := map[string]string{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		mod, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		deps[mod] = strings.Fields(rest)
		byName[modBase(mod)] = mod
	}
	return deps, byName, sc.Err()
}

func modBase(p string) string {
	b := filepath.Base(p)
	if i := strings.Index(b, ".ko"); i >= 0 {
		b = b[:i]
	}
	return strings.ReplaceAll(b, "-", "_")
}

// selectModules resolves specs (module names, or directory prefixes
// ending in "/" such as "kernel/net/") to module paths with all their
// dependencies, in load order (dependencies first). Unknown names are
// skipped: they may be built in.
func selectModules(modDir string, specs []string) ([]string, error) {
	deps, byName, err := modDep(modDir)
	if err != nil {
		return nil, err
	}
	var order []string
	seen := map[string]bool{}
	var add func(m string)
	add = func(m string) {
		if seen[m] {
			return
		}
		seen[m] = true
		d := deps[m]
		for i := len(d) - 1; i >= 0; i-- {
			add(d[i])
		}
		order = append(order, m)
	}
	var all []string
	for m := range deps {
		all = append(all, m)
	}
	sort.Strings(all)
	for _, s := range specs {
		if strings.HasSuffix(s, "/") {
			for _, m := range all {
				if strings.HasPrefix(m, s) {
					add(m)
				}
			}
			continue
		}
		if m, ok := byName[strings.ReplaceAll(s, "-", "_")]; ok {
			add(m)
		}
	}
	return order, nil
}

// installModules copies mods from modDir into root/lib/modules/release
// with the kernel's builtin lists and runs depmod there.
func installModules(root, release, modDir string, mods []string) error {
	dst := filepath.Join(root, "lib", "modules", release)
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	for _, m := range mods {
		if err := copyFile(filepath.Join(dst, m), filepath.Join(modDir, m), 0o644); err != nil {
			return err
		}
	}
	for _, f := range []string{"modules.builtin", "modules.builtin.modinfo", "modules.order"} {
		if _, err := os.Stat(filepath.Join(modDir, f)); err == nil {
			if err := copyFile(filepath.Join(dst, f), filepath.Join(modDir, f), 0o644); err != nil {
				return err
			}
		}
	}
	depmod := "/sbin/depmod"
	if _, err := os.Stat(depmod); err != nil {
		depmod = "depmod"
	}
	return run(depmod, "-b", root, release)
}

// copyFile copies src to dst (creating dst's directory), keeping nothing
// but the given mode.
func copyFile(dst, src string, mode os.FileMode) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	return os.WriteFile(dst, data, mode)
}

// diskUsage is the allocated size of a (sparse) file.
func diskUsage(info os.FileInfo) int64 {
	if st, ok := info.Sys().(*syscall.Stat_t); ok {
		return st.Blocks * 512
	}
	return info.Size()
}

// guestParts are what every guest image takes from the host: the QEMU
// kernel's modules, the UML kernel's, and the agent.
type guestParts struct {
	k               *kernelInfo
	u               *umlInfo
	agent, agentSum string
}

func (b *builder) guestParts() (guestParts, error) {
	g := guestParts{k: b.kernel}
	var err error
	if g.k == nil {
		if g.k, err = debianKernel(); err != nil {
			return g, err
		}
	}
	if g.u, err = umlKernel(); err != nil {
		return g, err
	}
	g.agent, g.agentSum, err = b.agentBinary()
	return g, err
}

// inputs are an image's stamp inputs: the parts' versions and more.
func (g guestParts) inputs(more map[string]string) map[string]string {
	in := map[string]string{
		"builder": builderVersion,
		"kernel":  g.k.Pkg + "=" + g.k.PkgVer,
		"uml":     g.u.Release + "=" + g.u.PkgVer,
		"agent":   g.agentSum,
	}
	maps.Copy(in, more)
	return in
}

// installModules installs under root the kernel modules a guest loads
// under QEMU (qemu) and under UML (uml).
func (g guestParts) installModules(root string, qemu, uml []string) error {
	qm, err := selectModules(g.k.ModDir, qemu)
	if err != nil {
		return err
	}
	if err := installModules(root, g.k.Release, g.k.ModDir, qm); err != nil {
		return err
	}
	um, err := selectModules(g.u.ModDir, uml)
	if err != nil {
		return err
	}
	return installModules(root, g.u.Release, g.u.ModDir, um)
}
