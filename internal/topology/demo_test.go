package topology

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// mkDemo writes a demo folder: files maps relative paths to content
// ("->target" makes a symlink, a trailing "/" a folder).
func mkDemo(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for p, c := range files {
		full := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		switch {
		case strings.HasSuffix(p, "/"):
			err := os.MkdirAll(full, 0o755)
			if err != nil {
				t.Fatal(err)
			}
		case strings.HasPrefix(c, "->"):
			if err := os.Symlink(c[2:], full); err != nil {
				t.Fatal(err)
			}
		default:
			if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	return dir
}

const demoTopo = `<TOPOLOGY><config_path>.</config_path><VM><name>A</name><eth><vlan>l</vlan></eth></VM><VM><name>B</name></VM></TOPOLOGY>`

func TestLoadDemo(t *testing.T) {
	dir := mkDemo(t, map[string]string{
		"topology":                                 demoTopo,
		"files_to_delete_from_all_targets":         "rm -f /etc/motd\n",
		"files_to_add_in_all_targets/etc/hosts":    "127.0.0.1 localhost\n",
		"files_to_add_in_A/etc/rc.d/S10_addr":      "ip addr add 10.0.0.1/24 dev eth0\n",
		"files_to_add_in_A/etc/link":               "->rc.d/S10_addr",
		"files_to_add_in_A/etc/deep/up":            "->../rc.d",
		"files_to_add_in_A/empty/":                 "",
		"files_to_add_in_TYPO/etc/x":               "x",
		"files_to_add_in_all_targets/etc/selflink": "->.",
		"files_to_add_in_all_targets/etc/resolv":   "->/run/resolv.conf",
		"notes.txt":                                "not a demo entry",
	})
	for _, path := range []string{dir, filepath.Join(dir, "topology")} {
		d, err := Load(path)
		if err != nil {
			t.Fatal(err)
		}
		real, _ := filepath.EvalSymlinks(dir)
		if d.Dir != real {
			t.Errorf("Dir = %q, want %q", d.Dir, real)
		}
		if len(d.Topology.VMs) != 2 {
			t.Errorf("VMs: %+v", d.Topology.VMs)
		}
		if len(d.Warnings) != 1 || !strings.Contains(d.Warnings[0], `no VM "TYPO"`) {
			t.Errorf("warnings: %q", d.Warnings)
		}
	}
}

func TestLoadPlainFile(t *testing.T) {
	dir := mkDemo(t, map[string]string{"lab.xml": demoTopo})
	d, err := Load(filepath.Join(dir, "lab.xml"))
	if err != nil {
		t.Fatal(err)
	}
	if d.Dir != "" {
		t.Errorf("a folder without demo entries gives Dir %q", d.Dir)
	}
}

func TestLoadConfigPath(t *testing.T) {
	dir := mkDemo(t, map[string]string{
		"topology":                      strings.Replace(demoTopo, "<config_path>.</config_path>", "<config_path> sub </config_path>", 1),
		"sub/files_to_add_in_A/etc/foo": "foo",
	})
	d, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(d.Dir, "/sub") {
		t.Errorf("Dir = %q", d.Dir)
	}
	// A config_path that is a symlink out of the folder is refused.
	out := t.TempDir()
	dir2 := mkDemo(t, map[string]string{
		"topology": strings.Replace(demoTopo, "<config_path>.</config_path>", "<config_path>sub</config_path>", 1),
		"sub":      "->" + out,
	})
	if _, err := Load(dir2); err == nil || !strings.Contains(err.Error(), "outside the topology file's folder") {
		t.Errorf("want a refusal, got %v", err)
	}
}

func TestLoadRefusals(t *testing.T) {
	outside := t.TempDir()
	os.WriteFile(filepath.Join(outside, "secret"), []byte("s"), 0o600)
	tests := []struct {
		name  string
		files map[string]string
		want  string
	}{
		{"symlink up", map[string]string{"files_to_add_in_A/etc/passwd": "->../../../../../../etc/passwd"}, "would leave"},
		{"symlink just out", map[string]string{"files_to_add_in_A/x": "->../files_to_add_in_B"}, "would leave"},
		{"tree is a symlink", map[string]string{"files_to_add_in_A": "->" + outside}, "is a symlink; make it a real folder"},
		{"tree is a file", map[string]string{"files_to_add_in_A": "x"}, "must be a folder"},
		{"delete file symlink", map[string]string{"files_to_delete_from_all_targets": "->" + filepath.Join(outside, "secret")}, "must be a regular file"},
		{"topology symlink out", map[string]string{"topology": "->" + filepath.Join(outside, "secret")}, "outside the demo folder"},
		{"bad topology", map[string]string{"topology": "<TOPOLOGY><VM/></TOPOLOGY>"}, "topology:1: <VM> has no <name>"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, ok := tc.files["topology"]; !ok {
				tc.files["topology"] = demoTopo
			}
			dir := mkDemo(t, tc.files)
			_, err := Load(dir)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want an error with %q, got %v", tc.want, err)
			}
		})
	}
}

func TestLoadMissing(t *testing.T) {
	if _, err := Load(t.TempDir()); err == nil || !strings.Contains(err.Error(), "topology") {
		t.Errorf("folder without topology: %v", err)
	}
	if _, err := Load("/nonexistent/x"); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("missing path: %v", err)
	}
}
