package guest

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// modDB is what depmod wrote for the running kernel.
type modDB struct {
	dir     string
	deps    map[string][]string // module name -> its dependencies' names
	files   map[string]string   // module name -> path
	aliases [][3]string         // pattern, module, the pattern's literal prefix
	loaded  map[string]bool
}

func modName(p string) string {
	b := path.Base(p)
	if i := strings.Index(b, ".ko"); i >= 0 {
		b = b[:i]
	}
	return strings.ReplaceAll(b, "-", "_")
}

// openModDB reads modules.dep and modules.alias of the running kernel;
// nil when the image carries no modules for it.
func openModDB() *modDB {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return nil
	}
	rel := unix.ByteSliceToString(u.Release[:])
	dir := filepath.Join("/lib/modules", rel)
	db := &modDB{dir: dir, deps: map[string][]string{}, files: map[string]string{}, loaded: map[string]bool{}}
	f, err := os.Open(filepath.Join(dir, "modules.dep"))
	if err != nil {
		return nil
	}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		mod, deps, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		n := modName(mod)
		db.files[n] = filepath.Join(dir, mod)
		for _, d := range strings.Fields(deps) {
			db.deps[n] = append(db.deps[n], modName(d))
		}
	}
	f.Close()
	if f, err := os.Open(filepath.Join(dir, "modules.alias")); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			w := strings.Fields(sc.Text())
			if len(w) == 3 && w[0] == "alias" {
				lit := w[1]
				if i := strings.IndexAny(lit, "*?[\\"); i >= 0 {
					lit = lit[:i]
				}
				db.aliases = append(db.aliases, [3]string{w[1], modName(w[2]), lit})
			}
		}
		f.Close()
	}
	// What is already in (the initrd loaded the disk drivers).
	if data, err := os.ReadFile("/proc/modules"); err == nil {
		for _, l := range strings.Split(string(data), "\n") {
			if w := strings.Fields(l); len(w) > 0 {
				db.loaded[w[0]] = true
			}
		}
	}
	return db
}

// load inserts module name and its dependencies (deepest first).
func (db *modDB) load(name string) error {
	name = modName(name)
	if db.loaded[name] {
		return nil
	}
	file, ok := db.files[name]
	if !ok {
		return fmt.Errorf("module %s: not in %s", name, db.dir)
	}
	db.loaded[name] = true // also breaks dependency cycles
	deps := db.deps[name]
	for i := len(deps) - 1; i >= 0; i-- {
		if err := db.load(deps[i]); err != nil {
			return err
		}
	}
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	flags := 0
	if strings.HasSuffix(file, ".xz") || strings.HasSuffix(file, ".zst") || strings.HasSuffix(file, ".gz") {
		flags = 4 // MODULE_INIT_COMPRESSED_FILE
	}
	if err := unix.FinitModule(int(f.Fd()), "", flags); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("module %s: %v", name, err)
	}
	return nil
}

// coldplug loads the modules matching the modaliases of present devices
// (what udev does at boot), twice so that devices appearing from the first
// round (virtio after virtio_pci) get theirs.
func (db *modDB) coldplug(logf func(string, ...any)) {
	for round := 0; round < 2; round++ {
		paths, _ := filepath.Glob("/sys/bus/*/devices/*/modalias")
		for _, p := range paths {
			data, err := os.ReadFile(p)
			if err != nil {
				continue
			}
			alias := strings.TrimSpace(string(data))
			for _, a := range db.aliases {
				// The literal prefix rules out nearly all patterns cheaply
				// (path.Match is slow under TCG with thousands of PCI ids).
				if !strings.HasPrefix(alias, a[2]) || db.loaded[a[1]] {
					continue
				}
				if ok, _ := path.Match(a[0], alias); ok {
					if err := db.load(a[1]); err != nil {
						logf("%v", err)
					}
				}
			}
		}
	}
}
