package proto

import (
	"encoding/xml"
	"fmt"
	"strings"
	"time"
)

// AddLan is <add_lan name=.../>.
type AddLan struct {
	XMLName xml.Name `xml:"add_lan"`
	Name    string   `xml:"name,attr"`
}

func (AddLan) Verb() string      { return "add_lan" }
func (r AddLan) Validate() error { return needName(r.Verb(), "name", "lan", r.Name) }

// DelLan is <del_lan name=.../>.
type DelLan struct {
	XMLName xml.Name `xml:"del_lan"`
	Name    string   `xml:"name,attr"`
}

func (DelLan) Verb() string      { return "del_lan" }
func (r DelLan) Validate() error { return need(r.Verb(), "name", r.Name) }

// Attach is <attach port=... lan=.../>.
type Attach struct {
	XMLName xml.Name `xml:"attach"`
	Port    string   `xml:"port,attr"`
	Lan     string   `xml:"lan,attr"`
}

func (Attach) Verb() string { return "attach" }
func (r Attach) Validate() error {
	if err := need(r.Verb(), "port", r.Port); err != nil {
		return err
	}
	return needName(r.Verb(), "lan", "lan", r.Lan)
}

// Detach is <detach port=... lan=.../>.
type Detach struct {
	XMLName xml.Name `xml:"detach"`
	Port    string   `xml:"port,attr"`
	Lan     string   `xml:"lan,attr"`
}

func (Detach) Verb() string { return "detach" }
func (r Detach) Validate() error {
	if err := need(r.Verb(), "port", r.Port); err != nil {
		return err
	}
	return need(r.Verb(), "lan", r.Lan)
}

// AddPort is <add_port name=... kind=... tcp=.../>.
type AddPort struct {
	XMLName xml.Name `xml:"add_port"`
	Name    string   `xml:"name,attr"`
	Kind    string   `xml:"kind,attr,omitempty"` // stream (default), dgram, bess, daemon
	TCP     string   `xml:"tcp,attr,omitempty"`  // host:port for a stream port on TCP
}

func (AddPort) Verb() string      { return "add_port" }
func (r AddPort) Validate() error { return needName(r.Verb(), "name", "port", r.Name) }

// PortReply is add_port's reply.
type PortReply struct {
	XMLName xml.Name `xml:"port"`
	Name    string   `xml:"name,attr"`
	Socket  string   `xml:"socket,attr"`
}

// DelPort is <del_port name=.../>.
type DelPort struct {
	XMLName xml.Name `xml:"del_port"`
	Name    string   `xml:"name,attr"`
}

func (DelPort) Verb() string      { return "del_port" }
func (r DelPort) Validate() error { return need(r.Verb(), "name", r.Name) }

// SetPos is <set_pos kind=vm|lan|tux name=... x=... y=.../>.
type SetPos struct {
	XMLName xml.Name `xml:"set_pos"`
	Kind    string   `xml:"kind,attr"`
	Name    string   `xml:"name,attr"`
	X       *int     `xml:"x,attr"`
	Y       *int     `xml:"y,attr"`
}

func (SetPos) Verb() string { return "set_pos" }
func (r SetPos) Validate() error {
	for _, a := range [][2]string{{"kind", r.Kind}, {"name", r.Name}} {
		if err := need(r.Verb(), a[0], a[1]); err != nil {
			return err
		}
	}
	if err := inRange(r.Verb(), "x", r.X, -MaxPos, MaxPos); err != nil {
		return err
	}
	if err := inRange(r.Verb(), "y", r.Y, -MaxPos, MaxPos); err != nil {
		return err
	}
	if r.X == nil || r.Y == nil {
		return fmt.Errorf("<set_pos> needs attributes x=\"...\" and y=\"...\"")
	}
	return nil
}

// Target names what impair and capture act on: one of a port, a lan or
// a name that is either.
type Target struct {
	Port string `xml:"port,attr,omitempty"`
	Lan  string `xml:"lan,attr,omitempty"`
	Name string `xml:"name,attr,omitempty"`
}

func (t Target) check(verb string) error {
	n := 0
	for _, v := range []string{t.Port, t.Lan, t.Name} {
		if v != "" {
			n++
		}
	}
	if n != 1 {
		return fmt.Errorf("<%s> needs one of port=\"...\", lan=\"...\" or name=\"...\"", verb)
	}
	return nil
}

// Impair is <impair port|lan|name=... dir=... spec=... clear=.../>; with
// neither spec nor clear it asks for the current settings.
type Impair struct {
	XMLName xml.Name `xml:"impair"`
	Target
	Dir   string `xml:"dir,attr,omitempty"` // in, out, both
	Spec  string `xml:"spec,attr,omitempty"`
	Clear bool   `xml:"clear,attr,omitempty"`
}

func (Impair) Verb() string { return "impair" }
func (r Impair) Validate() error {
	if err := r.check(r.Verb()); err != nil {
		return err
	}
	switch r.Dir {
	case "", "in", "out", "both":
	default:
		return fmt.Errorf("<impair> dir=%q: use in, out or both", r.Dir)
	}
	if r.Clear && strings.TrimSpace(r.Spec) != "" {
		return fmt.Errorf("<impair>: give settings or clear, not both")
	}
	return nil
}

// Impaired is one port's line in impair's reply; the counters (frames
// the impairments touched) are there when the settings were asked for.
type Impaired struct {
	XMLName    xml.Name `xml:"impaired"`
	Port       string   `xml:"port,attr"`
	Impair     string   `xml:"impair,attr"`
	Lost       *uint64  `xml:"lost,attr,omitempty"`
	Duplicated *uint64  `xml:"duplicated,attr,omitempty"`
	Corrupted  *uint64  `xml:"corrupted,attr,omitempty"`
	Overflow   *uint64  `xml:"overflow,attr,omitempty"`
	Down       *uint64  `xml:"down,attr,omitempty"`
}

// ImpairReply is impair's reply: one <impaired/> per port shown.
type ImpairReply struct {
	Ports []Impaired `xml:"impaired"`
}

func (*ImpairReply) isList() {}

// Capture is <capture port|lan|name=... count=... duration=... queue=.../>.
type Capture struct {
	XMLName xml.Name `xml:"capture"`
	Target
	Count    *int   `xml:"count,attr,omitempty"`
	Duration string `xml:"duration,attr,omitempty"` // Go duration, up to a week
	Queue    *int   `xml:"queue,attr,omitempty"`
}

func (Capture) Verb() string { return "capture" }
func (r Capture) Validate() error {
	if err := r.check(r.Verb()); err != nil {
		return err
	}
	if err := inRange(r.Verb(), "count", r.Count, 0, 1<<31-1); err != nil {
		return err
	}
	if _, err := r.Dur(); err != nil {
		return err
	}
	return inRange(r.Verb(), "queue", r.Queue, MinCaptureQ, MaxCaptureQ)
}

// Dur is the capture's duration (0 for none).
func (r Capture) Dur() (time.Duration, error) {
	if r.Duration == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(r.Duration)
	if err != nil || d <= 0 || d > 7*24*time.Hour {
		return 0, fmt.Errorf("<capture> duration=%q: want a duration such as 10s or 5m, up to a week", r.Duration)
	}
	return d, nil
}
