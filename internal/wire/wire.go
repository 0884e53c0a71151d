// Package wire holds the frame transports that plug peers into switch
// ports, one file per transport: QEMU's stream and dgram netdevs, UML's
// vector bess and legacy daemon transports, VDE plugs. Each gives the
// fabric a Listener whose Accept returns fabric.Conns.
package wire

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
)

// ErrFrameSize reports a frame outside 14..65535 bytes.
var ErrFrameSize = errors.New("frame size out of range 14..65535")

// prepareUnixPath makes the socket's directory and removes a stale socket
// (never any other kind of file).
func prepareUnixPath(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return fmt.Errorf("%s exists and is not a socket; remove it or choose another name", path)
		}
		if err := os.Remove(path); err != nil {
			return err
		}
	}
	return nil
}

// unixListen listens on a unix socket of the given type ("unix",
// "unixpacket") at path.
func unixListen(network, path string) (*net.UnixListener, error) {
	if err := prepareUnixPath(path); err != nil {
		return nil, err
	}
	l, err := net.ListenUnix(network, &net.UnixAddr{Name: path, Net: network})
	if err != nil {
		return nil, err
	}
	l.SetUnlinkOnClose(true)
	return l, nil
}

func removeSocket(path string) error {
	if fi, err := os.Lstat(path); err == nil && fi.Mode()&os.ModeSocket != 0 {
		return os.Remove(path)
	}
	return nil
}
