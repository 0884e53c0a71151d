package fabric

// Conn is one connected peer of a port, as a transport in package wire
// gives it. ReadFrame is called from one goroutine, WriteFrame and Flush
// from another; Close may be called from any.
type Conn interface {
	// ReadFrame returns the next frame the peer sent, 14..65535 bytes, in
	// a frame from NewFrame. Malformed input that ends the stream is an error.
	ReadFrame() (*Frame, error)
	// WriteFrame sends (or buffers) one frame to the peer.
	WriteFrame(b []byte) error
	// Flush pushes out what WriteFrame buffered; called when the port's
	// queue runs empty, so batching never delays a lone frame.
	Flush() error
	Close() error
}

// Listener hands out the peers connecting to a port's socket.
type Listener interface {
	Accept() (Conn, error)
	Close() error
	// Addr is the socket path or address peers connect to.
	Addr() string
}
