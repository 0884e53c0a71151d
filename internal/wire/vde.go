package wire

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
)

// A VDE switch directory (DESIGN section 6): <dir>/ctl is a unix stream
// socket speaking the uml_switch/VDE request v3 (see uml_daemon.go), so
// `vde_plug vde://<dir> ...`, QEMU `-nic vde,sock=<dir>` and UML
// `ethN=daemon,,unix,<dir>/ctl` each plug in as a connection of their own.
// Our data socket for each plug lives in the same directory. Unlike
// vde_switch, every frame size from 14 to 65535 bytes passes.

// VDEDir serves one VDE directory.
type VDEDir struct {
	dir    string
	l      *net.UnixListener
	plug   func(*DaemonConn)
	n      atomic.Uint64
	mu     sync.Mutex
	conns  map[*DaemonConn]struct{}
	closed bool
	wg     sync.WaitGroup
}

// ListenVDE makes dir and its ctl socket; plug is called (in its own
// goroutine) with each client that completed the handshake. The callee
// owns the connection; it ends when the client leaves or on Close.
func ListenVDE(dir string, plug func(*DaemonConn)) (*VDEDir, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	ctl := filepath.Join(dir, "ctl")
	if len(ctl)+8 > sunPathLen {
		return nil, fmt.Errorf("VDE socket %s is too long for a unix socket (108 bytes); use a shorter work_dir or lan name", ctl)
	}
	// A unix socket's file appears at bind, before listen: a client that
	// dials as soon as it sees ctl would be refused. So the socket listens
	// under a hidden name and appears as ctl only once it accepts.
	tmp := filepath.Join(dir, ".ctl")
	l, err := unixListen("unix", tmp)
	if err != nil {
		return nil, err
	}
	l.SetUnlinkOnClose(false) // Close removes the whole directory
	if err := prepareUnixPath(ctl); err != nil {
		l.Close()
		return nil, err
	}
	if err := os.Rename(tmp, ctl); err != nil {
		l.Close()
		_ = os.Remove(tmp)
		return nil, err
	}
	v := &VDEDir{dir: dir, l: l, plug: plug, conns: map[*DaemonConn]struct{}{}}
	v.wg.Add(1)
	go v.accept()
	return v, nil
}

// Dir is the VDE directory (what vde:// and -nic vde,sock= name).
func (v *VDEDir) Dir() string { return v.dir }

func (v *VDEDir) accept() {
	defer v.wg.Done()
	for {
		c, err := v.l.Accept()
		if err != nil {
			return
		}
		go func() {
			data := filepath.Join(v.dir, fmt.Sprintf("port%d", v.n.Add(1)))
			d, err := AcceptDaemon(c, data)
			if err != nil {
				return
			}
			v.mu.Lock()
			if v.closed {
				v.mu.Unlock()
				d.Close()
				return
			}
			v.conns[d] = struct{}{}
			v.mu.Unlock()
			go func() {
				<-d.Done()
				v.mu.Lock()
				delete(v.conns, d)
				v.mu.Unlock()
			}()
			v.plug(d)
		}()
	}
}

// Close stops accepting, ends every plug and removes the directory.
func (v *VDEDir) Close() error {
	v.mu.Lock()
	if v.closed {
		v.mu.Unlock()
		return nil
	}
	v.closed = true
	conns := make([]*DaemonConn, 0, len(v.conns))
	for c := range v.conns {
		conns = append(conns, c)
	}
	v.mu.Unlock()
	err := v.l.Close()
	v.wg.Wait()
	for _, c := range conns {
		c.Close()
	}
	_ = os.RemoveAll(v.dir)
	return err
}
