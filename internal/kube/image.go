// Package kube runs cloonix labs on Kubernetes: the images its pods run,
// the Lab resource, and the client that deploys and operates labs.
package kube

import (
	"compress/gzip"
	"debug/elf"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"cloonix/internal/machine/cnt"
)

// ImageTag is the tag of every image `cloonix kube images` writes; pods
// use them with imagePullPolicy IfNotPresent, so an imported archive is
// used as it is (re-import after rebuilding).
const ImageTag = "latest"

// SwitchImageName is the short name of the switch image (DaemonSet).
const SwitchImageName = "switch"

// ImageRef is the reference pods use for the cloonix image short
// (switch, rootfs-busybox...), under registry when one is given.
func ImageRef(registry, short string) string {
	ref := "cloonix/" + short + ":" + ImageTag
	if registry = strings.TrimSuffix(registry, "/"); registry != "" {
		return registry + "/" + ref
	}
	// Spelled out as containerd stores an imported docker-archive's name.
	return "docker.io/" + ref
}

var unsafeName = regexp.MustCompile(`[^a-z0-9._-]+`)

// RootfsImageName is the short image name of a cnt rootfs reference:
// rootfs-busybox for the bulk image busybox, rootfs-<base name> for a
// path.
func RootfsImageName(ref cnt.Ref) string {
	base := ref.Arg
	if ref.Kind != cnt.RefBulk {
		base = filepath.Base(strings.TrimSuffix(ref.Arg, ".tar"))
	}
	base = strings.Trim(unsafeName.ReplaceAllString(strings.ToLower(base), "-"), "-._")
	if base == "" {
		base = "tree"
	}
	return "rootfs-" + base
}

// ImagesOptions are `cloonix kube images`'s inputs.
type ImagesOptions struct {
	OutDir   string
	Rootfs   []string // cnt references; none: the bulk images present
	Store    cnt.Store
	Registry string // prefix of the names written in the archives
	Cloonix  string // the cloonix binary for the switch image
	Log      io.Writer
}

// DefaultRootfs are the bulk images written when none is named.
var DefaultRootfs = []string{"busybox", "debian-frr"}

// WriteImages writes OutDir/switch.tar and OutDir/rootfs-NAME.tar
// (docker-archive, importable by `ctr -n k8s.io images import` or
// loadable by docker/podman and pushable) and returns their paths.
func WriteImages(o ImagesOptions) ([]string, error) {
	if err := os.MkdirAll(o.OutDir, 0o755); err != nil {
		return nil, fmt.Errorf("--out %s: %v", o.OutDir, err)
	}
	roots := o.Rootfs
	if len(roots) == 0 {
		for _, b := range DefaultRootfs {
			if _, err := os.Stat(filepath.Join(o.Store.BulkDir, b+".img")); err == nil {
				roots = append(roots, b)
			}
		}
	}
	refs := make([]cnt.Ref, len(roots))
	for i, r := range roots {
		ref, err := cnt.ParseRef(r)
		if err != nil {
			return nil, err
		}
		refs[i] = ref
	}
	var out []string
	p, err := writeSwitch(o)
	if err != nil {
		return out, err
	}
	out = append(out, p)
	for _, ref := range refs {
		rf, err := o.Store.Resolve(ref)
		if err != nil {
			return out, err
		}
		short := RootfsImageName(ref)
		env := rf.Env
		if len(env) == 0 {
			env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
		}
		cfg := v1.Config{Env: env, Cmd: []string{"/bin/sh"}}
		tree := rf.Tree
		p, err := writeImage(o, short, cfg, func(w io.Writer) error { return writeTree(w, tree) })
		if err != nil {
			return out, fmt.Errorf("image of rootfs %s: %w", ref, err)
		}
		out = append(out, p)
	}
	return out, nil
}

// writeSwitch: the static cloonix binary on busybox-static (a shell for
// kubectl exec and the switch's scripts), nothing else.
func writeSwitch(o ImagesOptions) (string, error) {
	bb, err := findBusybox()
	if err != nil {
		return "", err
	}
	if err := checkStatic(o.Cloonix); err != nil {
		return "", err
	}
	files := map[string]string{"/usr/bin/cloonix": o.Cloonix, "/bin/busybox": bb}
	links := map[string]string{"/bin/sh": "busybox"}
	cfg := v1.Config{
		Entrypoint: []string{"/usr/bin/cloonix"},
		Env:        []string{"PATH=/usr/bin:/bin"},
	}
	return writeImage(o, SwitchImageName, cfg, func(w io.Writer) error { return fileLayer(w, files, links, "/tmp", "/run") })
}

// checkStatic: the switch image has no C library, so the binary must be
// static (no ELF interpreter).
func checkStatic(bin string) error {
	f, err := elf.Open(bin)
	if err != nil {
		return fmt.Errorf("switch image: %s: %v", bin, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("switch image: %s is dynamically linked; build cloonix with CGO_ENABLED=0 (make build does) and run that one", bin)
		}
	}
	return nil
}

// findBusybox finds a static busybox (Debian's busybox-static).
func findBusybox() (string, error) {
	for _, p := range []string{"/bin/busybox", "/usr/bin/busybox"} {
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
			return p, nil
		}
	}
	return "", fmt.Errorf("no busybox for the switch image: apt-get install busybox-static")
}

// writeImage makes a one-layer image from the tar that layer writes and
// saves it as OutDir/short.tar under its reference.
func writeImage(o ImagesOptions, short string, cfg v1.Config, layer func(io.Writer) error) (string, error) {
	ref := ImageRef(o.Registry, short)
	tag, err := name.NewTag(ref)
	if err != nil {
		return "", fmt.Errorf("image name %s: %v", ref, err)
	}
	tmp, err := os.CreateTemp(o.OutDir, ".layer-"+short+"-*.tar")
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp.Name())
	err = layer(tmp)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", err
	}
	l, err := tarball.LayerFromFile(tmp.Name(), tarball.WithCompressionLevel(gzip.BestSpeed))
	if err != nil {
		return "", err
	}
	img, err := mutate.AppendLayers(empty.Image, l)
	if err != nil {
		return "", err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return "", err
	}
	cf = cf.DeepCopy()
	// containerd's import keeps only images of its platform.
	cf.OS, cf.Architecture = "linux", runtime.GOARCH
	cf.Config = cfg
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return "", err
	}
	out := filepath.Join(o.OutDir, short+".tar")
	if err := tarball.WriteToFile(out+".tmp", tag, img); err != nil {
		os.Remove(out + ".tmp")
		return "", fmt.Errorf("writing %s: %v", out, err)
	}
	if err := os.Rename(out+".tmp", out); err != nil {
		return "", err
	}
	if o.Log != nil {
		fmt.Fprintf(o.Log, "%s\t%s\n", out, ref)
	}
	return out, nil
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
