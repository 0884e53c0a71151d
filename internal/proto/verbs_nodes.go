package proto

import (
	"encoding/base64"
	"encoding/xml"
	"errors"
	"fmt"
	"strings"
)

// AddVM is <add_vm name=... type=... mem=... .../>. Unset numbers take
// the switch's defaults (256 MB, 1 CPU, 1 eth).
type AddVM struct {
	XMLName     xml.Name `xml:"add_vm"`
	Name        string   `xml:"name,attr"`
	Type        string   `xml:"type,attr,omitempty"` // kvm (default, also "qemu"), uml or cnt
	Mem         *int     `xml:"mem,attr,omitempty"`  // MB
	CPU         *int     `xml:"cpu,attr,omitempty"`
	Eth         *int     `xml:"eth,attr,omitempty"`
	Rootfs      string   `xml:"rootfs,attr,omitempty"`
	Kernel      string   `xml:"kernel,attr,omitempty"`
	Transport   string   `xml:"transport,attr,omitempty"` // UML: bess or daemon
	MgmtIP      string   `xml:"mgmt_ip,attr,omitempty"`   // mgmt0's address; default: derived from the name
	BootTimeout *int     `xml:"boot_timeout,attr,omitempty"`
	Demo        string   `xml:"demo,attr,omitempty"` // absolute demo folder
	Wait        bool     `xml:"wait,attr,omitempty"`
	// State "stopped" adds the guest without booting it; KeepDisk boots
	// it from the disk left in work_dir/NAME (resume). lifecycle.go.
	State    string `xml:"state,attr,omitempty"`
	KeepDisk bool   `xml:"keep_disk,attr,omitempty"`
}

func (AddVM) Verb() string { return "add_vm" }
func (r AddVM) Validate() error {
	if err := needName(r.Verb(), "name", "vm", r.Name); err != nil {
		return err
	}
	typ := strings.ToLower(strings.TrimSpace(r.Type))
	switch typ {
	case "", "kvm", "qemu", "uml", "cnt":
	default:
		return fmt.Errorf("vm %s: type %q: use kvm or uml, or cnt for a container", r.Name, r.Type)
	}
	if r.Mem != nil && (*r.Mem < MinMem || *r.Mem > MaxMem) {
		return fmt.Errorf("vm %s: memory %d MB is out of range: give --mem from %d to %d", r.Name, *r.Mem, MinMem, MaxMem)
	}
	if err := inRange(r.Verb(), "cpu", r.CPU, 1, MaxCPU); err != nil {
		return err
	}
	if typ == "uml" && r.CPU != nil && *r.CPU != 1 {
		return fmt.Errorf("vm %s: UML guests have one CPU; drop --cpu or use --type kvm", r.Name)
	}
	if err := inRange(r.Verb(), "eth", r.Eth, 0, MaxEths); err != nil {
		return err
	}
	tr := strings.ToLower(r.Transport)
	if typ == "uml" && tr != "" && tr != "bess" && tr != "daemon" {
		return fmt.Errorf("vm %s: UML transport %q: use bess or daemon", r.Name, r.Transport)
	}
	if typ != "uml" && tr != "" {
		return fmt.Errorf("vm %s: --uml-transport is for UML guests only", r.Name)
	}
	if r.State != "" && r.State != "running" && r.State != "stopped" {
		return fmt.Errorf("<add_vm> state=%q: use running or stopped", r.State)
	}
	return inRange(r.Verb(), "boot_timeout", r.BootTimeout, 1, MaxBootTimeout)
}

// A demo folder (add_vm's demo="...", DESIGN section 4) holds these
// entries; topology reads the folder, the switch puts the trees for each
// VM on its config CD.
const (
	DemoDeleteName   = "files_to_delete_from_all_targets"
	DemoAllTargets   = "files_to_add_in_all_targets"
	DemoTargetPrefix = "files_to_add_in_" // + VM name
)

// VMReply is add_vm's reply.
type VMReply struct {
	XMLName xml.Name `xml:"vm"`
	Name    string   `xml:"name,attr"`
	Pid     int      `xml:"pid,attr"`
	State   string   `xml:"state,attr"`
	Accel   string   `xml:"accel,attr"`
}

// DelVM is <del_vm name=.../>.
type DelVM struct {
	XMLName xml.Name `xml:"del_vm"`
	Name    string   `xml:"name,attr"`
}

func (DelVM) Verb() string      { return "del_vm" }
func (r DelVM) Validate() error { return need(r.Verb(), "name", r.Name) }

// Exec is <exec name=... timeout=...><arg>..</arg><stdin>base64</stdin></exec>.
type Exec struct {
	XMLName xml.Name `xml:"exec"`
	Name    string   `xml:"name,attr"`
	Timeout *int     `xml:"timeout,attr,omitempty"` // seconds; none waits for a booting guest
	Args    []string `xml:"arg"`
	Stdin   string   `xml:"stdin,omitempty"` // base64
}

func (Exec) Verb() string { return "exec" }
func (r Exec) Validate() error {
	if err := need(r.Verb(), "name", r.Name); err != nil {
		return err
	}
	if len(r.Args) == 0 || r.Args[0] == "" {
		return errors.New("<exec> needs the command as <arg> elements")
	}
	if _, err := r.StdinBytes(); err != nil {
		return err
	}
	return inRange(r.Verb(), "timeout", r.Timeout, 0, MaxExecTimeout)
}

// StdinBytes is the decoded standard input.
func (r Exec) StdinBytes() ([]byte, error) {
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(r.Stdin))
	if err != nil {
		return nil, fmt.Errorf("<exec>: stdin is not base64: %v", err)
	}
	return b, nil
}

// ExecReply is exec's reply; the streams are base64.
type ExecReply struct {
	XMLName   xml.Name `xml:"exec"`
	Code      int      `xml:"code,attr"`
	Truncated bool     `xml:"truncated,attr,omitempty"`
	Stdout    string   `xml:"stdout"`
	Stderr    string   `xml:"stderr"`
}

// Console is <console name=.../>.
type Console struct {
	XMLName xml.Name `xml:"console"`
	Name    string   `xml:"name,attr"`
}

func (Console) Verb() string      { return "console" }
func (r Console) Validate() error { return need(r.Verb(), "name", r.Name) }

// ConsoleReply is console's reply: the guest's console socket and log.
type ConsoleReply struct {
	XMLName xml.Name `xml:"console"`
	Name    string   `xml:"name,attr"`
	Path    string   `xml:"path,attr"`
	Log     string   `xml:"log,attr"`
}

// AddTux is <add_tux name=... kind=... OPTION=.../>; the options are the
// kind's (subnet, ifname, peer, remote, ...), checked by the switch.
type AddTux struct {
	XMLName xml.Name   `xml:"add_tux"`
	Name    string     `xml:"name,attr"`
	Kind    string     `xml:"kind,attr"`
	Options []xml.Attr `xml:",any,attr"`
}

func (AddTux) Verb() string { return "add_tux" }
func (r AddTux) Validate() error {
	if err := need(r.Verb(), "name", r.Name); err != nil {
		return err
	}
	return need(r.Verb(), "kind", r.Kind)
}

// Option sets a kind option (replacing an earlier value).
func (r *AddTux) Option(k, v string) {
	for i := range r.Options {
		if r.Options[i].Name.Local == k {
			r.Options[i].Value = v
			return
		}
	}
	r.Options = append(r.Options, xml.Attr{Name: xml.Name{Local: k}, Value: v})
}

// OptionMap is the options by name.
func (r AddTux) OptionMap() map[string]string {
	m := make(map[string]string, len(r.Options))
	for _, a := range r.Options {
		m[a.Name.Local] = a.Value
	}
	return m
}

// TuxReply is add_tux's reply.
type TuxReply struct {
	XMLName xml.Name `xml:"tux"`
	Name    string   `xml:"name,attr"`
	Kind    string   `xml:"kind,attr"`
	Pid     int      `xml:"pid,attr"`
}

// DelTux is <del_tux name=.../>.
type DelTux struct {
	XMLName xml.Name `xml:"del_tux"`
	Name    string   `xml:"name,attr"`
}

func (DelTux) Verb() string      { return "del_tux" }
func (r DelTux) Validate() error { return need(r.Verb(), "name", r.Name) }

// ForwardAdd is <forward_add name=SLIRP proto=tcp|udp host=... guest=.../>.
type ForwardAdd struct {
	XMLName xml.Name `xml:"forward_add"`
	Name    string   `xml:"name,attr"`
	Proto   string   `xml:"proto,attr,omitempty"` // tcp (default) or udp
	Host    string   `xml:"host,attr,omitempty"`
	Guest   string   `xml:"guest,attr"`
	// Public allows a host address beyond loopback (docs/security.md).
	Public bool `xml:"public,attr,omitempty"`
}

func (ForwardAdd) Verb() string { return "forward_add" }
func (r ForwardAdd) Validate() error {
	if err := need(r.Verb(), "name", r.Name); err != nil {
		return err
	}
	if r.Guest == "" {
		return fmt.Errorf("<forward_add> needs guest=\"GUESTIP:PORT\"")
	}
	return nil
}

// ForwardDel is <forward_del name=SLIRP proto=... host=.../>.
type ForwardDel struct {
	XMLName xml.Name `xml:"forward_del"`
	Name    string   `xml:"name,attr"`
	Proto   string   `xml:"proto,attr,omitempty"`
	Host    string   `xml:"host,attr,omitempty"`
	Guest   string   `xml:"guest,attr,omitempty"` // optional: the forward is known by proto and host
}

func (ForwardDel) Verb() string      { return "forward_del" }
func (r ForwardDel) Validate() error { return need(r.Verb(), "name", r.Name) }
