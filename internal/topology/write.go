package topology

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Bytes writes t in the seed's format (one element per line, values
// padded with a space as the seed writes them). Parse(Bytes(t)) gives t
// back.
func (t *Topology) Bytes() []byte {
	var b bytes.Buffer
	b.WriteString("<TOPOLOGY>\n")
	cp := t.ConfigPath
	if cp == "" {
		cp = "."
	}
	leaf(&b, 1, "config_path", cp)
	for _, v := range t.VMs {
		b.WriteString("  <VM>\n")
		leaf(&b, 2, "name", v.Name)
		if v.Type != "" {
			leaf(&b, 2, "type", strings.ToUpper(v.Type))
		}
		if v.Mem > 0 {
			leaf(&b, 2, "mem", fmt.Sprint(v.Mem))
		}
		if v.CPU > 0 {
			leaf(&b, 2, "cpu", fmt.Sprint(v.CPU))
		}
		if v.Rootfs != "" {
			leaf(&b, 2, "rootfs", v.Rootfs)
		}
		if v.Kernel != "" {
			leaf(&b, 2, "kernel", v.Kernel)
		}
		if v.Transport != "" {
			leaf(&b, 2, "transport", v.Transport)
		}
		if v.MgmtIP != "" {
			leaf(&b, 2, "mgmt_ip", v.MgmtIP)
		}
		if v.K8sNode != "" {
			leaf(&b, 2, "k8s_node", v.K8sNode)
		}
		for _, a := range v.After {
			leaf(&b, 2, "after", a)
		}
		if v.State != "" {
			leaf(&b, 2, "state", v.State)
		}
		if v.Disk != "" {
			leaf(&b, 2, "disk_file", v.Disk)
		}
		pos(&b, 2, v.X, v.Y)
		for _, e := range v.Eths {
			b.WriteString("    <eth>")
			for _, l := range e.Lans {
				b.WriteString(" <vlan> ")
				esc(&b, l)
				b.WriteString(" </vlan>")
			}
			if e.Impair != "" {
				b.WriteString(" <impair> ")
				esc(&b, e.Impair)
				b.WriteString(" </impair>")
			}
			if e.Link != "" {
				b.WriteString(" <link> " + e.Link + " </link>")
			}
			b.WriteString(" </eth>\n")
		}
		b.WriteString("  </VM>\n")
	}
	for _, x := range t.Tux {
		b.WriteString("  <TUX>\n")
		leaf(&b, 2, "name", x.Name)
		leaf(&b, 2, "type", x.Kind)
		for _, l := range x.Lans {
			leaf(&b, 2, "vlan", l)
		}
		for _, o := range x.Options {
			leaf(&b, 2, o.Name, o.Value)
		}
		for _, f := range x.Forwards {
			leaf(&b, 2, "forward", f.Proto+" "+f.Host+" "+f.Guest)
		}
		if x.Impair != "" {
			leaf(&b, 2, "impair", x.Impair)
		}
		if x.Link != "" {
			leaf(&b, 2, "link", x.Link)
		}
		pos(&b, 2, x.X, x.Y)
		b.WriteString("  </TUX>\n")
	}
	for _, l := range t.Lans {
		b.WriteString("  <LAN>\n")
		leaf(&b, 2, "name", l.Name)
		pos(&b, 2, l.X, l.Y)
		b.WriteString("  </LAN>\n")
	}
	b.WriteString("</TOPOLOGY>\n")
	return b.Bytes()
}

func leaf(b *bytes.Buffer, depth int, name, value string) {
	b.WriteString(strings.Repeat("  ", depth))
	fmt.Fprintf(b, "<%s> ", name)
	esc(b, value)
	fmt.Fprintf(b, " </%s>\n", name)
}

func esc(b *bytes.Buffer, s string) { _ = xml.EscapeText(b, []byte(s)) }

func pos(b *bytes.Buffer, depth int, x, y *int) {
	if x != nil {
		leaf(b, depth, "x", fmt.Sprint(*x))
	}
	if y != nil {
		leaf(b, depth, "y", fmt.Sprint(*y))
	}
}

// WriteFile writes t to path atomically (a temporary file renamed), so a
// failed save never leaves half a file.
func (t *Topology) WriteFile(path string) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, ".topology-*")
	if err != nil {
		return fmt.Errorf("saving %s: %v", path, err)
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(t.Bytes()); err != nil {
		f.Close()
		return fmt.Errorf("saving %s: %v", path, err)
	}
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("saving %s: %v", path, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("saving %s: %v", path, err)
	}
	return nil
}
