package topology

import (
	"strings"
	"testing"
)

// A container node's <rootfs> may be a path or an image reference; other
// kinds keep bulk_dir names.
func TestCntRootfs(t *testing.T) {
	for _, tc := range []struct{ xml, err string }{
		{"<VM><name>a</name><rootfs>oci:/srv/frr</rootfs><type>CNT</type></VM>", ""},
		{"<VM><name>a</name><type>cnt</type><rootfs>/srv/tree</rootfs></VM>", ""},
		{"<VM><name>a</name><type>KVM</type><rootfs>/srv/tree</rootfs></VM>", "<rootfs>"},
		{"<VM><name>a</name><rootfs>docker:frr</rootfs></VM>", "<rootfs>"},
	} {
		top, err := Parse("t.xml", []byte("<TOPOLOGY>"+tc.xml+"</TOPOLOGY>"))
		if tc.err == "" {
			if err != nil || len(top.VMs) != 1 || top.VMs[0].Type != "cnt" {
				t.Errorf("%s: %v %+v", tc.xml, err, top)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%s: %v, want %q", tc.xml, err, tc.err)
		}
	}
}
