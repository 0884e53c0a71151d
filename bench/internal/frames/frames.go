// Package frames drives a fabric directly for the in-process benchmarks
// (bench/fabric, bench/impair): stream ports on a lan, test frames and
// a sender that floods them.
package frames

import (
	"encoding/binary"
	"net"
	"path/filepath"
	"sync/atomic"
	"time"

	"cloonix/internal/fabric"
	"cloonix/internal/wire"
)

// Broadcast is the all-ones destination MAC.
var Broadcast = []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

// Frame is an Ethernet frame of size bytes from src to dst (an
// experimental ethertype, zero payload).
func Frame(dst, src []byte, size int) []byte {
	b := make([]byte, size)
	copy(b, dst)
	copy(b[6:], src)
	b[12], b[13] = 0x88, 0xb5
	return b
}

// Port adds stream port name to fab, its socket in dir, attaches it to
// lan, connects to it and waits until the fabric sees the connection.
func Port(fab *fabric.Fabric, dir, name, lan string) (*wire.StreamConn, error) {
	sock := filepath.Join(dir, name+".sock")
	l, err := wire.ListenStream(sock)
	if err != nil {
		return nil, err
	}
	p, _ := fab.AddPort(name, "stream")
	p.Serve(l)
	if err := fab.Attach(name, lan); err != nil {
		return nil, err
	}
	c, err := net.Dial("unix", sock)
	if err != nil {
		return nil, err
	}
	for !p.Connected() {
		time.Sleep(time.Millisecond)
	}
	return wire.NewStreamConn(c), nil
}

// Flood sends frame after frame of ring on tx, numbered, flushing every
// flushEvery frames, until stop is set or a write fails; it returns the
// count sent. The ring is flushed before any frame of it is reused:
// WriteFrame may send a frame from where it is (fabric.Conn).
func Flood(tx *wire.StreamConn, ring [][]byte, flushEvery int, stop *atomic.Bool) uint64 {
	var n uint64
	for !stop.Load() {
		for i := 0; i < flushEvery; i++ {
			f := ring[n%uint64(len(ring))]
			binary.BigEndian.PutUint64(f[14:], n)
			if tx.WriteFrame(f) != nil {
				return n
			}
			n++
		}
		if tx.Flush() != nil {
			return n
		}
	}
	return n
}
