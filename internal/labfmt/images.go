package labfmt

import (
	"fmt"
	"strings"
)

// FallbackRootfs runs any image the table does not know.
const FallbackRootfs = "debian-frr"

// DefaultImages maps the foreign images cloonix knows to its rootfs
// (keys without tag or registry; see imageKeys).
var DefaultImages = map[string]string{
	"kathara/frr":           "debian-frr",
	"kathara/quagga":        "debian-frr",
	"kathara/base":          "debian-frr",
	"frrouting/frr":         "debian-frr",
	"quay.io/frrouting/frr": "debian-frr",
	"alpine":                "debian-frr",
	"debian":                "debian-frr",
	"ubuntu":                "debian-frr",
	"busybox":               "busybox",
}

// imageKeys are the names an image is looked up by, most precise first:
// as written, without its tag or digest, without docker.io/library.
func imageKeys(image string) []string {
	keys := []string{image}
	base := image
	if i := strings.IndexByte(base, '@'); i >= 0 {
		base = base[:i]
	}
	if i := strings.LastIndexByte(base, ':'); i > strings.LastIndexByte(base, '/') {
		base = base[:i]
	}
	keys = append(keys, base)
	for _, p := range []string{"docker.io/library/", "docker.io/", "library/"} {
		if strings.HasPrefix(base, p) {
			keys = append(keys, strings.TrimPrefix(base, p))
		}
	}
	return keys
}

// mapImage returns the rootfs for image: the user's map, then the
// defaults. known is false when neither knows it.
func mapImage(image string, user map[string]string) (rootfs string, known, userMapped bool) {
	keys := imageKeys(image)
	for _, k := range keys {
		if r, ok := user[k]; ok {
			return r, true, true
		}
	}
	for _, k := range keys {
		if r, ok := DefaultImages[k]; ok {
			return r, true, false
		}
	}
	return FallbackRootfs, false, false
}

// ParseImageFlag reads --image IMAGE=ROOTFS into m.
func ParseImageFlag(m map[string]string, s string) error {
	img, rootfs, ok := strings.Cut(s, "=")
	img, rootfs = strings.TrimSpace(img), strings.TrimSpace(rootfs)
	if !ok || img == "" || rootfs == "" {
		return fmt.Errorf("--image %q: give IMAGE=ROOTFS, e.g. kathara/frr=debian-frr", s)
	}
	m[img] = rootfs
	return nil
}
