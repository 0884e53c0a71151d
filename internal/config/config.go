// Package config reads and writes the daemon's config file, the seed's
// <cloonix_config> format (DESIGN section 4). Missing elements take defaults.
package config

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"cloonix/internal/mgmt"
	"cloonix/internal/proto"
)

// Config is one daemon's configuration. Two daemons with different
// work_dir, server_name and server_port run side by side.
type Config struct {
	XMLName      xml.Name `xml:"cloonix_config"`
	NetworkName  string   `xml:"network_name"`
	ServerName   string   `xml:"server_name"`    // unix control socket
	ServerPort   int      `xml:"server_port"`    // TCP control port; -1 turns TCP control off
	ServerAddr   string   `xml:"server_addr"`    // TCP listen address, default 127.0.0.1
	Password     string   `xml:"password"`       // TCP control and t2t password
	WorkDir      string   `xml:"work_dir"`       // COW disks, CDs, sockets, logs
	BulkDir      string   `xml:"bulk_dir"`       // reference images, never written
	BinDir       string   `xml:"bin_dir"`        // where helper binaries live (default: this binary)
	RSAPublicKey string   `xml:"rsa_public_key"` // put in every guest for ssh
	Accel        string   `xml:"accel"`          // auto (default), kvm or tcg
	OCIRuntime   string   `xml:"oci_runtime"`    // container nodes' OCI runtime: runc (default), crun or a path
	NoNat        bool     `xml:"no_nat"`         // do not start the default "nat" slirp tux
	// Mgmt is the management network (mgmt.Default unless given; "off"
	// for none); MgmtAllow the host ports guests may open through it.
	Mgmt      string `xml:"mgmt"`
	MgmtAllow string `xml:"mgmt_allow,omitempty"`
	// SlirpHostPorts, when set, is the allow-list of host ports a guest
	// may reach through a slirp gateway ("22,4713,8000-8999", or "none");
	// unset, every host port but the lab's own listeners (docs/security.md).
	SlirpHostPorts string `xml:"slirp_host_ports,omitempty"`
	// ImageMap maps foreign lab images (Kathará, containerlab) to rootfs:
	// <image_map> <image> kathara/frr = debian-frr </image> </image_map>.
	ImageMap *ImageMap `xml:"image_map,omitempty"`

	// Path is the file the config was read from (not serialised).
	Path string `xml:"-"`
}

// DefaultPath is ~/.config/cloonix/config.xml.
func DefaultPath() string {
	home, err := os.UserHomeDir()
	if err != nil || home == "" {
		home = "/root"
	}
	return filepath.Join(home, ".config", "cloonix", "config.xml")
}

// DefaultWorkDir is ~/.local/state/cloonix/NETWORK: private to the user
// (never a fixed name under /tmp, which another user could make first),
// and on disk rather than $XDG_RUNTIME_DIR's tmpfs, as it holds the COW
// disks.
func DefaultWorkDir(network string) string {
	home, err := os.UserHomeDir()
	if err != nil || home == "" {
		home = "/root"
	}
	name := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.' {
			return r
		}
		return '_'
	}, network)
	if name == "" || name == "." || name == ".." {
		name = "lab"
	}
	return filepath.Join(home, ".local", "state", "cloonix", name)
}

// MinPassword is the shortest password TCP control accepts.
const MinPassword = 8

// TCPWarning says why TCP control stays off although <server_port> asks
// for it: an empty or short password (an HMAC keyed with nothing proves
// nothing). "" when TCP control is on or off by choice.
func (c *Config) TCPWarning() string {
	if c.ServerPort <= 0 || len(c.Password) >= MinPassword {
		return ""
	}
	return fmt.Sprintf("TCP control (<server_port>%d</server_port>) stays off: <password> has %d characters, it needs at least %d; set a longer <password> in %s, or <server_port>-1</server_port> to silence this", c.ServerPort, len(c.Password), MinPassword, c.Path)
}

// Default returns the default configuration with a fresh random password.
func Default() *Config {
	c := &Config{}
	c.fill()
	c.Password = RandomPassword()
	return c
}

// RandomPassword returns 16 random bytes in hex.
func RandomPassword() string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

func (c *Config) fill() {
	if c.NetworkName == "" {
		c.NetworkName = "Cloonix-Net-Lab"
	}
	if c.WorkDir == "" {
		c.WorkDir = DefaultWorkDir(c.NetworkName)
	}
	if c.ServerName == "" {
		c.ServerName = filepath.Join(c.WorkDir, "cloonix_unix_sock")
	}
	if c.ServerPort == 0 {
		c.ServerPort = 54321
	}
	if c.ServerAddr == "" {
		c.ServerAddr = "127.0.0.1"
	}
	if c.BulkDir == "" {
		c.BulkDir = "$HOME/cloonix_labs/bulk"
	}
	if c.RSAPublicKey == "" {
		c.RSAPublicKey = "$HOME/.ssh/id_rsa.pub"
	}
	if c.Accel == "" {
		c.Accel = "auto"
	}
	if c.Mgmt == "" {
		c.Mgmt = mgmt.Default
	}
}

// expand replaces $HOME and other environment variables in paths.
func expand(s string) string { return os.ExpandEnv(strings.TrimSpace(s)) }

// Parse reads a config from XML bytes; values are trimmed and $VARS expanded.
func Parse(data []byte, name string) (*Config, error) {
	c := &Config{}
	if err := xml.Unmarshal(data, c); err != nil {
		return nil, fmt.Errorf("%s: %v (expected <cloonix_config> with elements such as <work_dir>)", name, err)
	}
	c.NetworkName = strings.TrimSpace(c.NetworkName)
	c.ServerName = expand(c.ServerName)
	c.ServerAddr = strings.TrimSpace(c.ServerAddr)
	c.Password = strings.TrimSpace(c.Password)
	c.WorkDir = expand(c.WorkDir)
	c.BulkDir = expand(c.BulkDir)
	c.BinDir = expand(c.BinDir)
	c.RSAPublicKey = expand(c.RSAPublicKey)
	c.Accel = strings.ToLower(strings.TrimSpace(c.Accel))
	c.Mgmt = strings.TrimSpace(c.Mgmt)
	c.SlirpHostPorts = strings.TrimSpace(c.SlirpHostPorts)
	c.fill()
	c.BulkDir = expand(c.BulkDir)
	c.RSAPublicKey = expand(c.RSAPublicKey)
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %v", name, err)
	}
	if _, err := c.Images(); err != nil {
		return nil, fmt.Errorf("%s: %v", name, err)
	}
	c.Path = name
	return c, nil
}

// Validate checks values that would otherwise fail later and obscurely.
func (c *Config) Validate() error {
	if c.ServerPort < -1 || c.ServerPort > 65535 {
		return fmt.Errorf("<server_port> %d out of range 1..65535 (-1 turns TCP control off)", c.ServerPort)
	}
	switch c.Accel {
	case "auto", "kvm", "tcg":
	default:
		return fmt.Errorf("<accel> %q: use auto, kvm or tcg", c.Accel)
	}
	if _, err := mgmt.Parse(c.Mgmt); err != nil {
		return err
	}
	if _, err := mgmt.ParseAllow(c.MgmtAllow); err != nil {
		return err
	}
	if !filepath.IsAbs(c.WorkDir) {
		return fmt.Errorf("<work_dir> %q must be an absolute path", c.WorkDir)
	}
	if _, err := proto.ParsePorts(c.SlirpHostPorts); err != nil {
		return fmt.Errorf("<slirp_host_ports> %v", err)
	}
	if len(c.ServerName) > 100 {
		return fmt.Errorf("<server_name> %q is longer than a unix socket path may be (100 bytes)", c.ServerName)
	}
	return nil
}

// Load reads path. If path is the default path and does not exist, the
// default config is written there first (first start on a fresh machine).
func Load(path string, create bool) (*Config, error) {
	if path == "" {
		path = DefaultPath()
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) && create {
		c := Default()
		if err := c.Write(path); err != nil {
			return nil, err
		}
		data, err = os.ReadFile(path)
	}
	if err != nil {
		return nil, fmt.Errorf("config %s: %v (run `cloonix start` once to create it, or pass -c FILE)", path, err)
	}
	return Parse(data, path)
}

// Write saves the config with mode 0600 (it holds the password).
func (c *Config) Write(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("config %s: %v", path, err)
	}
	out, err := xml.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	out = append(out, '\n')
	if err := os.WriteFile(path, out, 0o600); err != nil {
		return fmt.Errorf("config %s: %v", path, err)
	}
	return nil
}

// TCPAddr is the TCP control address, or "" when TCP is off (also when
// the password is too short: TCPWarning).
func (c *Config) TCPAddr() string {
	if c.ServerPort <= 0 || len(c.Password) < MinPassword {
		return ""
	}
	return c.ServerAddr + ":" + strconv.Itoa(c.ServerPort)
}

// Paths inside work_dir.
func (c *Config) PortsDir() string { return filepath.Join(c.WorkDir, "ports") }
func (c *Config) VDEDir() string   { return filepath.Join(c.WorkDir, "vde") }
func (c *Config) PidFile() string  { return filepath.Join(c.WorkDir, "switch.pid") }
func (c *Config) LogFile() string  { return filepath.Join(c.WorkDir, "switch.log") }

// ImageMap is <image_map>: one <image> IMAGE = ROOTFS </image> per entry.
type ImageMap struct {
	Images []string `xml:"image"`
}

// Images returns <image_map> as a map, foreign image to rootfs.
func (c *Config) Images() (map[string]string, error) {
	m := map[string]string{}
	if c.ImageMap == nil {
		return m, nil
	}
	for _, e := range c.ImageMap.Images {
		img, rootfs, ok := strings.Cut(e, "=")
		img, rootfs = strings.TrimSpace(img), strings.TrimSpace(rootfs)
		if !ok || img == "" || rootfs == "" {
			return nil, fmt.Errorf("<image_map>: <image> %q: write IMAGE = ROOTFS, e.g. kathara/frr = debian-frr", strings.TrimSpace(e))
		}
		m[img] = rootfs
	}
	return m, nil
}
