package cnt

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"cloonix/internal/cmdout"
)

// oci resolves an OCI image: a layout directory, a docker/podman save
// archive, or an image of the local docker/podman store (saved to an
// archive first: no daemon API client needed). The flattened tree is
// cached by the image's config digest (its image ID).
func (s *Store) oci(ref Ref) (*Rootfs, error) {
	if err := os.MkdirAll(s.cacheDir(), 0o755); err != nil {
		return nil, fmt.Errorf("cache %s: %v", s.cacheDir(), err)
	}
	archive := ref.Arg
	if ref.Kind == RefDocker {
		tool, err := storeTool()
		if err != nil {
			return nil, err
		}
		// A cached tree for the store's image ID needs no save.
		if out, err := exec.Command(tool, "image", "inspect", "--format", "{{.Id}}", "--", ref.Arg).Output(); err == nil {
			if id, ok := strings.CutPrefix(strings.TrimSpace(string(out)), "sha256:"); ok && len(id) == 64 {
				if rf, ok := s.lookup("oci-"+id[:24], ref); ok {
					return rf, nil
				}
			}
		}
		tmp, err := os.MkdirTemp(s.cacheDir(), ".save-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(tmp)
		archive = filepath.Join(tmp, "image.tar")
		args := []string{"save", "-o", archive, "--", ref.Arg}
		if filepath.Base(tool) == "podman" {
			args = []string{"save", "--format", "docker-archive", "-o", archive, "--", ref.Arg}
		}
		if out, err := exec.Command(tool, args...).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("%s save %s: %v: %s", tool, ref.Arg, err, cmdout.Tail(out, 5))
		}
	}
	img, err := openImage(ref.Kind, archive)
	if err != nil {
		return nil, err
	}
	id, err := img.ConfigName()
	if err != nil {
		return nil, fmt.Errorf("reading the image: %v", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("reading the image's config: %v", err)
	}
	tree, meta, err := s.cached("oci-"+id.Hex[:24], func(dst string) (imageMeta, error) {
		rc := mutate.Extract(img)
		defer rc.Close()
		return imageMeta{Source: ref.String() + "@" + id.String(), Env: cf.Config.Env}, untar(rc, dst)
	})
	if err != nil {
		return nil, err
	}
	return &Rootfs{Ref: ref, Tree: tree, Env: meta.Env}, nil
}

// lookup returns an already cached tree.
func (s *Store) lookup(key string, ref Ref) (*Rootfs, bool) {
	tree, meta, err := s.cached(key, func(string) (imageMeta, error) { return imageMeta{}, errors.New("not cached") })
	if err != nil {
		return nil, false
	}
	return &Rootfs{Ref: ref, Tree: tree, Env: meta.Env}, true
}

// storeTool is docker or podman, whichever is installed and answers.
func storeTool() (string, error) {
	for _, t := range []string{"docker", "podman"} {
		if p, err := exec.LookPath(t); err == nil {
			if exec.Command(p, "version").Run() == nil {
				return p, nil
			}
		}
	}
	return "", errors.New("docker:IMAGE needs a working docker or podman (none answers here); or save the image (docker save -o FILE IMAGE) and use docker-archive:FILE")
}

// openImage opens a docker-archive file or an OCI layout directory,
// choosing this machine's platform in an index.
func openImage(kind, p string) (v1.Image, error) {
	st, err := os.Stat(p)
	if err != nil {
		return nil, errors.New(errText(err))
	}
	if kind == RefOCI {
		if !st.IsDir() {
			return nil, errors.New("an OCI layout is a directory holding index.json (for a saved archive say docker-archive:" + p + ")")
		}
		idx, err := layout.ImageIndexFromPath(p)
		if err != nil {
			return nil, fmt.Errorf("not an OCI layout: %v", err)
		}
		return pickImage(idx, 0)
	}
	if st.IsDir() {
		return nil, errors.New("a docker archive is a file (for a layout directory say oci:" + p + ")")
	}
	img, err := tarball.ImageFromPath(p, nil)
	if err != nil {
		return nil, fmt.Errorf("not a docker save archive holding one image: %v", err)
	}
	// Fail now on a corrupt archive rather than half way through.
	if _, err := img.Layers(); err != nil {
		return nil, fmt.Errorf("corrupt archive: %v", err)
	}
	return img, nil
}

// pickImage takes the image for linux/GOARCH (or the only one) of idx.
func pickImage(idx v1.ImageIndex, depth int) (v1.Image, error) {
	if depth > 4 {
		return nil, errors.New("OCI index nested too deep")
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("reading index.json: %v", err)
	}
	var found []v1.Descriptor
	for _, d := range im.Manifests {
		if d.Platform == nil || (d.Platform.OS == "linux" && d.Platform.Architecture == runtime.GOARCH) {
			found = append(found, d)
		}
	}
	if len(found) == 0 {
		return nil, fmt.Errorf("no image for linux/%s in the layout", runtime.GOARCH)
	}
	d := found[0]
	if d.MediaType.IsIndex() {
		sub, err := idx.ImageIndex(d.Digest)
		if err != nil {
			return nil, err
		}
		return pickImage(sub, depth+1)
	}
	img, err := idx.Image(d.Digest)
	if err != nil {
		return nil, fmt.Errorf("image %s: %v", d.Digest, err)
	}
	if _, err := img.Layers(); err != nil {
		return nil, fmt.Errorf("image %s: %v", d.Digest, err)
	}
	return img, nil
}
