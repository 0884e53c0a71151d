package cnt

import (
	"fmt"
	"path/filepath"
	"strings"
)

// Kinds of root filesystem reference (--rootfs, DESIGN section 10).
const (
	RefBulk          = "bulk"           // busybox, debian-frr: an ext4 image of bulk_dir
	RefDir           = "dir"            // /path/to/tree
	RefOCI           = "oci"            // oci:/path/to/layout
	RefDockerArchive = "docker-archive" // docker-archive:/path/to/save.tar
	RefDocker        = "docker"         // docker:IMAGE from the local docker or podman store
)

// DefaultRootfs is the rootfs of a container node given none.
const DefaultRootfs = "busybox"

// Ref is a parsed --rootfs value.
type Ref struct {
	Kind string
	Arg  string // image name (bulk, docker) or absolute path
}

func (r Ref) String() string {
	switch r.Kind {
	case RefBulk, RefDir:
		return r.Arg
	}
	return r.Kind + ":" + r.Arg
}

// ParseRef reads a --rootfs value: a bulk image name, an absolute path
// (a directory tree, or an ext4 image file), oci:/dir,
// docker-archive:/file or docker:IMAGE. It touches nothing on the host.
func ParseRef(s string) (Ref, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		s = DefaultRootfs
	}
	if strings.ContainsAny(s, "\x00\n\r\t") {
		return Ref{}, fmt.Errorf("rootfs %q: control characters are not allowed", s)
	}
	if strings.HasPrefix(s, "/") {
		return cleanPath(s, RefDir, s)
	}
	if kind, arg, ok := strings.Cut(s, ":"); ok {
		switch kind {
		case RefOCI, RefDockerArchive:
			if !strings.HasPrefix(arg, "/") {
				return Ref{}, fmt.Errorf("rootfs %q: %s: wants an absolute path, e.g. %s:/srv/images/frr", s, kind, kind)
			}
			return cleanPath(s, kind, arg)
		case RefDocker, "podman":
			if err := checkImageName(arg); err != nil {
				return Ref{}, fmt.Errorf("rootfs %q: %v", s, err)
			}
			return Ref{Kind: RefDocker, Arg: arg}, nil
		}
		if strings.Contains(kind, "/") || strings.Contains(kind, ".") {
			return Ref{}, fmt.Errorf("rootfs %q: an image of the docker store is docker:%s", s, s)
		}
		return Ref{}, fmt.Errorf("rootfs %q: unknown kind %q: use a bulk image name, /path/to/tree, oci:/dir, docker-archive:/file.tar or docker:IMAGE", s, kind)
	}
	name := strings.TrimSuffix(s, ".img")
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\\ ") || strings.HasPrefix(name, "-") {
		return Ref{}, fmt.Errorf("rootfs %q: not a bulk image name; give an absolute path for a directory tree", s)
	}
	return Ref{Kind: RefBulk, Arg: name}, nil
}

// cleanPath cleans an absolute path, refusing one that would not read
// back the same (spaces left at an end).
func cleanPath(s, kind, p string) (Ref, error) {
	p = filepath.Clean(p)
	if strings.TrimSpace(p) != p {
		return Ref{}, fmt.Errorf("rootfs %q: a path may not start or end with spaces", s)
	}
	return Ref{Kind: kind, Arg: p}, nil
}

// checkImageName accepts docker image references (name[:tag][@digest])
// without spaces or a leading dash, so they are safe as one argument.
func checkImageName(n string) error {
	if n == "" {
		return fmt.Errorf("docker: wants an image name, e.g. docker:frrouting/frr:v8.4.0")
	}
	if len(n) > 255 {
		return fmt.Errorf("docker image name longer than 255 characters")
	}
	if strings.HasPrefix(n, "-") {
		return fmt.Errorf("docker image %q may not start with '-'", n)
	}
	for _, r := range n {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("._-/:@+", r)
		if !ok {
			return fmt.Errorf("docker image %q: %q is not allowed in an image reference", n, r)
		}
	}
	return nil
}
