// Package inventory writes the running lab's guests for automation tools
// (docs/automation.md): Ansible, Nornir, ssh_config and plain JSON. Each
// host is a guest with its management address, user root and the private
// key whose public half the config puts in every guest.
package inventory

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"

	"cloonix/internal/proto"
)

// Formats are the values of --format.
var Formats = []string{"ansible", "nornir", "ssh-config", "json"}

// Host is one guest reachable on the management network.
type Host struct {
	Name    string `json:"name"`
	Address string `json:"address"` // without its length
	Type    string `json:"type"`
	Image   string `json:"image"`
	State   string `json:"state"`
	User    string `json:"user"`
	Key     string `json:"key"` // private key file
}

// Hosts are the lab's guests that have a management address, by name.
// key is the private key file.
func Hosts(lab *proto.Lab, key string) []Host {
	var hs []Host
	for _, v := range lab.VMs {
		addr, _, _ := strings.Cut(v.Mgmt, "/")
		if addr == "" {
			continue
		}
		hs = append(hs, Host{Name: v.Name, Address: addr, Type: v.Type, Image: v.Rootfs, State: v.State, User: "root", Key: key})
	}
	sort.Slice(hs, func(i, j int) bool { return hs[i].Name < hs[j].Name })
	return hs
}

// Write prints hosts in format.
func Write(w io.Writer, format string, hosts []Host) error {
	switch format {
	case "json":
		e := json.NewEncoder(w)
		e.SetIndent("", "  ")
		if hosts == nil {
			hosts = []Host{}
		}
		return e.Encode(map[string]any{"hosts": hosts})
	case "ssh-config":
		return sshConfig(w, hosts)
	case "ansible":
		return writeYAML(w, ansible(hosts))
	case "nornir":
		return writeYAML(w, nornir(hosts))
	}
	return fmt.Errorf("--format %q: use %s", format, strings.Join(Formats, ", "))
}

// sshOpts: guests make new host keys at every first boot, so known_hosts
// would only collect stale entries and warnings.
var sshOpts = [][2]string{{"StrictHostKeyChecking", "no"}, {"UserKnownHostsFile", "/dev/null"}, {"LogLevel", "ERROR"}, {"IdentitiesOnly", "yes"}}

func sshConfig(w io.Writer, hosts []Host) error {
	var b strings.Builder
	b.WriteString("# cloonix inventory --format ssh-config: ssh -F FILE NAME\n")
	for _, h := range hosts {
		fmt.Fprintf(&b, "\nHost %s\n  HostName %s\n  User %s\n  IdentityFile %s\n", h.Name, h.Address, h.User, quoteSSH(h.Key))
		for _, o := range sshOpts {
			fmt.Fprintf(&b, "  %s %s\n", o[0], o[1])
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// quoteSSH quotes a path with spaces for ssh_config.
func quoteSSH(p string) string {
	if strings.ContainsAny(p, " \t") {
		return `"` + p + `"`
	}
	return p
}

// group is an Ansible group name: letters, digits and '_' only.
func group(prefix, v string) string {
	var b strings.Builder
	b.WriteString(prefix)
	for _, r := range strings.ToLower(v) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	return b.String()
}

type empty struct{}

// ansible is a YAML inventory: every guest under all, and groups by node
// type (type_uml) and by image (image_debian_frr).
func ansible(hosts []Host) map[string]any {
	all := map[string]any{}
	children := map[string]any{}
	add := func(g, host string) {
		c, ok := children[g].(map[string]any)
		if !ok {
			c = map[string]any{"hosts": map[string]empty{}}
			children[g] = c
		}
		c["hosts"].(map[string]empty)[host] = empty{}
	}
	for _, h := range hosts {
		all[h.Name] = map[string]string{"ansible_host": h.Address, "ansible_user": h.User,
			"ansible_ssh_private_key_file": h.Key, "cloonix_type": h.Type, "cloonix_image": h.Image}
		add(group("type_", h.Type), h.Name)
		add(group("image_", h.Image), h.Name)
	}
	top := map[string]any{
		"hosts": all,
		"vars":  map[string]string{"ansible_ssh_common_args": sshArgs()},
	}
	if len(children) > 0 {
		top["children"] = children
	}
	return map[string]any{"all": top}
}

func sshArgs() string {
	var a []string
	for _, o := range sshOpts[:3] {
		a = append(a, "-o "+o[0]+"="+o[1])
	}
	return strings.Join(a, " ")
}

// nornir is a SimpleInventory hosts file; type and image are in data
// (SimpleInventory wants groups defined in a file of their own).
func nornir(hosts []Host) map[string]any {
	out := map[string]any{}
	for _, h := range hosts {
		out[h.Name] = map[string]any{
			"hostname": h.Address,
			"username": h.User,
			"platform": "linux",
			"port":     22,
			"data":     map[string]string{"type": h.Type, "image": h.Image, "ssh_key": h.Key},
			"connection_options": map[string]any{
				"paramiko": map[string]any{"extras": map[string]any{"key_filename": h.Key, "look_for_keys": false}},
				"netmiko":  map[string]any{"extras": map[string]any{"key_file": h.Key, "use_keys": true}},
			},
		}
	}
	return out
}

func writeYAML(w io.Writer, v any) error {
	b, err := yaml.Marshal(v)
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}
