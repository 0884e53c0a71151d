package proto

import (
	"encoding/xml"
	"fmt"
	"path/filepath"
)

// Lab lifecycle requests (DESIGN section 10, docs/machines.md): stop and
// start a guest keeping its disk and links, save its disk, pull a cable.

// MaxStopTimeout bounds stop_vm's clean power-off wait (seconds).
const MaxStopTimeout = 3600

// StopVM is <stop_vm name=... timeout=.../>.
type StopVM struct {
	XMLName xml.Name `xml:"stop_vm"`
	Name    string   `xml:"name,attr"`
	Timeout *int     `xml:"timeout,attr,omitempty"` // seconds before a hard stop; default 20
}

func (StopVM) Verb() string { return "stop_vm" }
func (r StopVM) Validate() error {
	if err := need(r.Verb(), "name", r.Name); err != nil {
		return err
	}
	return inRange(r.Verb(), "timeout", r.Timeout, 1, MaxStopTimeout)
}

// StartVM is <start_vm name=... wait=.../>.
type StartVM struct {
	XMLName xml.Name `xml:"start_vm"`
	Name    string   `xml:"name,attr"`
	Wait    bool     `xml:"wait,attr,omitempty"`
}

func (StartVM) Verb() string      { return "start_vm" }
func (r StartVM) Validate() error { return need(r.Verb(), "name", r.Name) }

// SaveVM is <save_vm name=... file=.../>: file is an absolute path that
// does not exist yet.
type SaveVM struct {
	XMLName xml.Name `xml:"save_vm"`
	Name    string   `xml:"name,attr"`
	File    string   `xml:"file,attr"`
}

func (SaveVM) Verb() string { return "save_vm" }
func (r SaveVM) Validate() error {
	if err := need(r.Verb(), "name", r.Name); err != nil {
		return err
	}
	if err := need(r.Verb(), "file", r.File); err != nil {
		return err
	}
	if !filepath.IsAbs(r.File) {
		return fmt.Errorf("save vm %s: file %q: give an absolute path", r.Name, r.File)
	}
	return nil
}

// SavedReply is save_vm's reply.
type SavedReply struct {
	XMLName xml.Name `xml:"saved"`
	Name    string   `xml:"name,attr"`
	File    string   `xml:"file,attr"`
	Size    int64    `xml:"size,attr"`
}

// Link is <link port=... state="down|up"/>.
type Link struct {
	XMLName xml.Name `xml:"link"`
	Port    string   `xml:"port,attr"`
	State   string   `xml:"state,attr"`
}

func (Link) Verb() string { return "link" }
func (r Link) Validate() error {
	if err := need(r.Verb(), "port", r.Port); err != nil {
		return err
	}
	if r.State != "up" && r.State != "down" {
		return fmt.Errorf("link %s: state %q: use up or down", r.Port, r.State)
	}
	return nil
}

// LinkReply is link's reply: carrier is "guest" when the guest sees the
// change, "switch" when only the switch stops the frames.
type LinkReply struct {
	XMLName xml.Name `xml:"link"`
	Port    string   `xml:"port,attr"`
	State   string   `xml:"state,attr"`
	Carrier string   `xml:"carrier,attr"`
}
