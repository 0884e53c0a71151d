package machine

import (
	"fmt"
	"os/exec"
	"strings"
)

// CreateOverlay makes a qcow2 overlay at path whose backing file is the
// image. QEMU opens a backing file read-only, so the reference image is
// never written.
func CreateOverlay(qemuImg string, img Image, path string) error {
	out, err := exec.Command(qemuImg, "create", "-q", "-f", "qcow2", "-F", img.Format, "-b", img.Path, path).CombinedOutput()
	if err != nil {
		return fmt.Errorf("qemu-img create %s over %s: %v: %s", path, img.Path, err, strings.TrimSpace(string(out)))
	}
	return nil
}
