package inventory

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"cloonix/internal/proto"
)

func lab() *proto.Lab {
	return &proto.Lab{VMs: []proto.VM{
		{Name: "r2", Type: "kvm", Rootfs: "busybox", Mgmt: "172.30.0.7/24"},
		{Name: "r1", Type: "uml", Rootfs: "debian-frr", Mgmt: "172.30.0.9/24"},
		{Name: "nomgmt", Type: "uml", Rootfs: "busybox"},
	}}
}

func TestFormats(t *testing.T) {
	hosts := Hosts(lab(), "/k/id_rsa")
	if len(hosts) != 2 || hosts[0].Name != "r1" || hosts[0].Address != "172.30.0.9" {
		t.Fatalf("hosts %+v", hosts)
	}
	var b bytes.Buffer
	if err := Write(&b, "ansible", hosts); err != nil {
		t.Fatal(err)
	}
	var inv struct {
		All struct {
			Hosts    map[string]map[string]string
			Children map[string]struct{ Hosts map[string]any }
		}
	}
	if err := yaml.Unmarshal(b.Bytes(), &inv); err != nil {
		t.Fatal(err)
	}
	if inv.All.Hosts["r1"]["ansible_host"] != "172.30.0.9" || inv.All.Hosts["r1"]["ansible_ssh_private_key_file"] != "/k/id_rsa" {
		t.Fatalf("ansible hosts %v", inv.All.Hosts)
	}
	for g, want := range map[string]string{"type_uml": "r1", "type_kvm": "r2", "image_debian_frr": "r1", "image_busybox": "r2"} {
		if _, ok := inv.All.Children[g].Hosts[want]; !ok || len(inv.All.Children[g].Hosts) != 1 {
			t.Errorf("group %s: %v", g, inv.All.Children[g].Hosts)
		}
	}
	b.Reset()
	if err := Write(&b, "ssh-config", hosts); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "Host r1\n  HostName 172.30.0.9\n  User root\n  IdentityFile /k/id_rsa\n") {
		t.Fatalf("ssh-config:\n%s", b.String())
	}
	b.Reset()
	if err := Write(&b, "nornir", hosts); err != nil {
		t.Fatal(err)
	}
	var nr map[string]struct {
		Hostname, Username string
	}
	if err := yaml.Unmarshal(b.Bytes(), &nr); err != nil || nr["r2"].Hostname != "172.30.0.7" || nr["r2"].Username != "root" {
		t.Fatalf("nornir %v %v\n%s", nr, err, b.String())
	}
	b.Reset()
	if err := Write(&b, "json", nil); err != nil || strings.TrimSpace(b.String()) != `{
  "hosts": []
}` {
		t.Fatalf("empty json %q %v", b.String(), err)
	}
	var js map[string]any
	b.Reset()
	_ = Write(&b, "json", hosts)
	if err := json.Unmarshal(b.Bytes(), &js); err != nil {
		t.Fatal(err)
	}
	if err := Write(&b, "csv", hosts); err == nil || !strings.Contains(err.Error(), "ansible, nornir") {
		t.Fatalf("unknown format: %v", err)
	}
}
