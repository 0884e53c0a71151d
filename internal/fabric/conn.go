package fabric

import "errors"

// Conn is one connected peer of a port, as a transport in package wire
// gives it. ReadFrame is called from one goroutine, WriteFrame and Flush
// from another; Close may be called from any.
type Conn interface {
	// ReadFrame returns the next frame the peer sent, 14..65535 bytes, in
	// a frame from NewFrame. A frame refused alone (bad size on a
	// transport that keeps its framing) is an error wrapping ErrSkip: the
	// port counts a drop and reads on. Any other error ends the peer.
	ReadFrame() (*Frame, error)
	// WriteFrame sends (or buffers) one frame to the peer. b stays valid
	// and unchanged until the next Flush returns, so a transport may
	// queue it for a vectored write instead of copying it.
	WriteFrame(b []byte) error
	// Flush pushes out what WriteFrame buffered; called when the port's
	// queue runs empty, so batching never delays a lone frame.
	Flush() error
	Close() error
}

// TryWriter is a Conn that can write without blocking. A port whose peer
// is idle then writes from the sending port's reader at once, with no
// hand-over to its writer goroutine (no wakeup, no frame crossing to
// another core); what the socket does not take at once is kept by the
// transport and the writer goroutine finishes it with Flush, so a slow
// peer still never holds up the sender.
type TryWriter interface {
	// WriteNow sends frames without blocking. Bytes the socket does not
	// take are copied and kept for the next Flush, so the frames may be
	// released on return. It reports whether anything is kept.
	WriteNow(frames []*Frame) (kept bool, err error)
}

// ErrSkip marks a frame the transport refused on its own; the peer stays.
var ErrSkip = errors.New("frame skipped")

// Listener hands out the peers connecting to a port's socket.
type Listener interface {
	Accept() (Conn, error)
	Close() error
	// Addr is the socket path or address peers connect to.
	Addr() string
}
