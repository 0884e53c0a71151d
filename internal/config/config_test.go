package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestFirstStart: loading a missing config with create writes the
// default (the seed's elements, a random password, mode 0600).
func TestFirstStart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "config.xml")
	c, err := Load(path, true)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("config file %v %v, want mode 0600", fi, err)
	}
	b, _ := os.ReadFile(path)
	for _, el := range []string{"<cloonix_config>", "<network_name>Cloonix-Net-Lab</network_name>", "<server_name>" + DefaultWorkDir("Cloonix-Net-Lab") + "/cloonix_unix_sock</server_name>",
		"<server_port>54321</server_port>", "<work_dir>" + DefaultWorkDir("Cloonix-Net-Lab") + "</work_dir>", "<bulk_dir>", "<rsa_public_key>", "<password>"} {
		if !strings.Contains(string(b), el) {
			t.Errorf("default config lacks %s:\n%s", el, b)
		}
	}
	if len(c.Password) != 32 {
		t.Errorf("password %q", c.Password)
	}
	c2, err := Load(path, true) // read back, not rewritten
	if err != nil || c2.Password != c.Password {
		t.Errorf("second load: %v, password %q vs %q", err, c2.Password, c.Password)
	}
	if a, b := Default(), Default(); a.Password == b.Password {
		t.Error("default passwords repeat")
	}
	if _, err := Load(filepath.Join(t.TempDir(), "none.xml"), false); err == nil || !strings.Contains(err.Error(), "-c FILE") {
		t.Errorf("missing config without create: %v", err)
	}
}

func TestParse(t *testing.T) {
	t.Setenv("HOME", "/home/u")
	c, err := Parse([]byte(`<cloonix_config>
  <network_name>  Lab2 </network_name>
  <server_port> 5000 </server_port>
  <password> long-enough </password>
  <work_dir> /tmp/lab2 </work_dir>
  <bulk_dir>$HOME/b</bulk_dir>
  <accel> TCG </accel>
</cloonix_config>`), "x.xml")
	if err != nil {
		t.Fatal(err)
	}
	if c.NetworkName != "Lab2" || c.ServerPort != 5000 || c.WorkDir != "/tmp/lab2" || c.BulkDir != "/home/u/b" || c.Accel != "tcg" {
		t.Errorf("parsed %+v", c)
	}
	// The control socket follows work_dir, so a second lab needs only
	// its own work_dir and port to run beside the first.
	if c.ServerName != "/tmp/lab2/cloonix_unix_sock" || c.TCPAddr() != "127.0.0.1:5000" {
		t.Errorf("server %s %s", c.ServerName, c.TCPAddr())
	}
	if c.PortsDir() != "/tmp/lab2/ports" || c.PidFile() != "/tmp/lab2/switch.pid" {
		t.Errorf("paths %s %s", c.PortsDir(), c.PidFile())
	}
	if c.Path != "x.xml" {
		t.Errorf("path %q", c.Path)
	}
}

func TestParseErrors(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{`<cloonix_config><server_port>70000</server_port></cloonix_config>`, "server_port"},
		{`<cloonix_config><server_port>-2</server_port></cloonix_config>`, "server_port"},
		{`<cloonix_config><server_port>x</server_port></cloonix_config>`, "x.xml"},
		{`<cloonix_config><work_dir>rel/dir</work_dir></cloonix_config>`, "absolute"},
		{`<cloonix_config><accel>fast</accel></cloonix_config>`, "accel"},
		{`<cloonix_config><server_name>/` + strings.Repeat("s", 120) + `</server_name></cloonix_config>`, "server_name"},
		{`<cloonix_config>`, "x.xml"},
		{`<other/>`, "cloonix_config"},
	} {
		if _, err := Parse([]byte(c.in), "x.xml"); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error naming %q", c.in, err, c.want)
		}
	}
}

func TestWriteReadBack(t *testing.T) {
	c := Default()
	c.WorkDir = "/tmp/w2"
	c.ServerName = "/tmp/w2/ctl"
	c.ServerPort = 4242
	path := filepath.Join(t.TempDir(), "c.xml")
	if err := c.Write(path); err != nil {
		t.Fatal(err)
	}
	back, err := Load(path, false)
	if err != nil {
		t.Fatal(err)
	}
	if back.WorkDir != c.WorkDir || back.ServerName != c.ServerName || back.ServerPort != 4242 || back.Password != c.Password {
		t.Errorf("read back %+v", back)
	}
}

func TestTCPOff(t *testing.T) {
	c, err := Parse([]byte(`<cloonix_config><server_port>-1</server_port></cloonix_config>`), "off.xml")
	if err != nil {
		t.Fatal(err)
	}
	if c.TCPAddr() != "" {
		t.Errorf("server_port -1 still listens on %q", c.TCPAddr())
	}
}

// TestDefaultWorkDirPrivate (issue 15, finding 2): the default work_dir is
// the user's own, never a fixed name under /tmp, and a network name cannot
// move it elsewhere.
func TestDefaultWorkDirPrivate(t *testing.T) {
	home, _ := os.UserHomeDir()
	for _, n := range []string{"Cloonix-Net-Lab", "../../etc", "a/b", "", ".."} {
		d := DefaultWorkDir(n)
		if b := filepath.Base(d); filepath.Dir(d) != filepath.Join(home, ".local", "state", "cloonix") || b == ".." || b == "." {
			t.Errorf("DefaultWorkDir(%q) = %s", n, d)
		}
	}
	c := Default()
	if strings.HasPrefix(c.WorkDir, "/tmp") {
		t.Errorf("default work_dir %s is under /tmp", c.WorkDir)
	}
}

func TestImageMap(t *testing.T) {
	c, err := Parse([]byte("<cloonix_config><work_dir>/tmp/x</work_dir><image_map><image> kathara/frr = debian-frr </image><image>my/img=busybox</image></image_map></cloonix_config>"), "c.xml")
	if err != nil {
		t.Fatal(err)
	}
	m, err := c.Images()
	if err != nil || m["kathara/frr"] != "debian-frr" || m["my/img"] != "busybox" || len(m) != 2 {
		t.Fatalf("Images() = %v, %v", m, err)
	}
	_, err = Parse([]byte("<cloonix_config><work_dir>/tmp/x</work_dir><image_map><image>kathara/frr</image></image_map></cloonix_config>"), "c.xml")
	if err == nil || !strings.Contains(err.Error(), "IMAGE = ROOTFS") {
		t.Fatalf("a bad <image> gave %v", err)
	}
}
