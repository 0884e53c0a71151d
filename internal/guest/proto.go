package guest

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
)

// The agent line protocol (docs/protocol.md, "Guest agent"). A serial line
// may carry noise (bytes echoed before the agent set raw mode, a host that
// connected mid-frame), so every frame starts with a magic and ends with a
// CRC, and the decoder resynchronises on the next magic after a bad frame.
//
//	magic  2 bytes  0xC7 0x58
//	type   1 byte
//	flags  1 byte   0 (reserved)
//	id     4 bytes  big endian: the request this frame belongs to
//	length 4 bytes  big endian: payload length, at most MaxPayload
//	payload
//	crc    4 bytes  big endian CRC-32 (IEEE) of type..payload

// Frame types.
const (
	TPing   = 1 // host->guest: are you ready? (empty)
	TPong   = 2 // guest->host: 1 byte ready (0/1), then a status text
	TExec   = 3 // host->guest: a piece of the request (see encodeExec); the process starts once it is whole
	TStdin  = 4 // host->guest: stdin bytes; an empty payload closes stdin
	TStdout = 5 // guest->host: stdout bytes
	TStderr = 6 // guest->host: stderr bytes
	TExit   = 7 // guest->host: 4-byte signed exit code, then an error text (usually empty)
	TKill   = 8 // host->guest: kill the process of this id (empty)
	TAck    = 9 // guest->host: 4-byte count of the bytes of a TExec/TStdin/TKill frame received
)

// Flow control from host to guest. A guest tty buffers about 4 KiB and
// UML's serial line stops reading for good once the tty throttled it, so
// the host keeps at most HostWindow bytes of TExec/TStdin/TKill frames
// unacknowledged and sends pieces of at most HostChunk bytes. Pings are
// not counted (they are rare and tiny).
const (
	HostWindow = 2048
	HostChunk  = 1024
)

const (
	magic0     = 0xC7
	magic1     = 0x58
	headerLen  = 12
	trailerLen = 4
	// MaxPayload bounds one frame so a corrupted length cannot make the
	// decoder wait for gigabytes; outputs are sent as several frames.
	MaxPayload = 32 << 10
	// maxArgs and maxArgLen bound an Exec request.
	maxArgs = 1024
)

// Frame is one decoded frame.
type Frame struct {
	Type    byte
	ID      uint32
	Payload []byte
}

// AppendFrame appends the encoding of f to b.
func AppendFrame(b []byte, typ byte, id uint32, payload []byte) []byte {
	if len(payload) > MaxPayload {
		panic("guest: frame payload too large")
	}
	start := len(b)
	b = append(b, magic0, magic1, typ, 0)
	b = binary.BigEndian.AppendUint32(b, id)
	b = binary.BigEndian.AppendUint32(b, uint32(len(payload)))
	b = append(b, payload...)
	sum := crc32.ChecksumIEEE(b[start+2:])
	return binary.BigEndian.AppendUint32(b, sum)
}

// Decoder reads frames from a byte stream, skipping noise.
//
// After a bad frame it resynchronises on the next magic. A false magic
// nested in the bad frame is tried too (a mangled short frame, or a host
// that connected mid-frame, may hide the start of a good one there), but
// each try checksums up to MaxPayload bytes: a guest sending fake headers
// every 12 bytes would make the host checksum ~2700 bytes per byte
// received. So checksumming is paid for by bytes consumed: every byte
// consumed earns crcPerByte bytes of credit (up to crcCredit), a bad
// frame spends its length, and while the credit is spent a bad frame is
// skipped whole (resync to the first magic after it). The work per byte
// received stays within a small constant of plain noise's.
type Decoder struct {
	r   io.Reader
	mem []byte // the whole buffer: two frames
	buf []byte // unread bytes, a window of mem
	// Skipped counts bytes dropped while resynchronising (for logs/tests).
	Skipped int
	credit  int // bytes the decoder may still checksum in nested resyncs
	work    int // bytes consumed plus bytes checksummed (for tests)
}

const (
	maxFrame   = headerLen + MaxPayload + trailerLen
	crcPerByte = 4
	crcCredit  = 4 * maxFrame
)

// NewDecoder reads frames from r.
func NewDecoder(r io.Reader) *Decoder {
	mem := make([]byte, 2*maxFrame)
	return &Decoder{r: r, mem: mem, buf: mem[:0], credit: crcCredit}
}

// fill reads more bytes; it returns the reader's error.
func (d *Decoder) fill() error {
	// Dropping bytes only moves the window (a copy per dropped byte was
	// the decoder's main cost on noise); the unread bytes move back to
	// the start when a whole frame might no longer fit after them.
	if cap(d.buf)-len(d.buf) < maxFrame {
		n := copy(d.mem, d.buf)
		d.buf = d.mem[:n]
		d.work += n
	}
	if len(d.buf) == cap(d.buf) {
		// Cannot happen: a frame never exceeds half the buffer and we
		// compact before reading. Guard anyway.
		return errors.New("guest: decoder buffer full")
	}
	n, err := d.r.Read(d.buf[len(d.buf):cap(d.buf)])
	d.buf = d.buf[:len(d.buf)+n]
	if n > 0 {
		return nil
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return err
}

// drop removes the first n bytes.
func (d *Decoder) drop(n int) {
	d.buf = d.buf[n:]
	d.work += n
	d.credit = min(d.credit+crcPerByte*n, crcCredit)
}

// badFrame drops a frame of total bytes whose CRC did not match: only its
// first byte while checksumming is paid for, the whole frame otherwise.
func (d *Decoder) badFrame(total int) {
	d.credit -= total
	n := 1
	if d.credit < 0 {
		n = total
	}
	d.Skipped += n
	d.drop(n)
}

// Next returns the next valid frame. Its payload is a fresh slice.
func (d *Decoder) Next() (Frame, error) {
	var noProgress int
	for {
		// Find the magic.
		i := bytes.IndexByte(d.buf, magic0)
		for i >= 0 && i+1 < len(d.buf) && d.buf[i+1] != magic1 {
			j := bytes.IndexByte(d.buf[i+1:], magic0)
			if j < 0 {
				i = -1
				break
			}
			i += 1 + j
		}
		if i < 0 {
			d.Skipped += len(d.buf)
			d.drop(len(d.buf))
		} else if i > 0 {
			d.Skipped += i
			d.drop(i)
		}
		if len(d.buf) >= headerLen {
			n := binary.BigEndian.Uint32(d.buf[8:12])
			if n > MaxPayload || d.buf[3] != 0 {
				d.Skipped++
				d.drop(1)
				continue
			}
			total := headerLen + int(n) + trailerLen
			if len(d.buf) >= total {
				want := binary.BigEndian.Uint32(d.buf[total-4 : total])
				d.work += total - 6
				if crc32.ChecksumIEEE(d.buf[2:total-4]) != want {
					d.badFrame(total)
					continue
				}
				f := Frame{Type: d.buf[2], ID: binary.BigEndian.Uint32(d.buf[4:8])}
				f.Payload = append([]byte(nil), d.buf[headerLen:total-4]...)
				d.drop(total)
				return f, nil
			}
		}
		if err := d.fill(); err != nil {
			if err == io.ErrNoProgress && noProgress < 100 {
				noProgress++
				continue
			}
			return Frame{}, err
		}
		noProgress = 0
	}
}

// encodeExec encodes an Exec request: uint32 length of the rest, uint16
// argc, then per argument a uint32 length and the bytes. It travels in
// TExec frames of at most HostChunk bytes each.
func encodeExec(argv []string) ([]byte, error) {
	if len(argv) == 0 {
		return nil, errors.New("exec: empty command")
	}
	if len(argv) > maxArgs {
		return nil, fmt.Errorf("exec: %d arguments, at most %d", len(argv), maxArgs)
	}
	b := binary.BigEndian.AppendUint16(nil, uint16(len(argv)))
	for _, a := range argv {
		b = binary.BigEndian.AppendUint32(b, uint32(len(a)))
		b = append(b, a...)
	}
	if len(b) > MaxPayload {
		return nil, fmt.Errorf("exec: command line of %d bytes, at most %d", len(b), MaxPayload)
	}
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(b))), b...), nil
}

// execLen returns the total request length announced by its first bytes.
func execLen(b []byte) (int, error) {
	if len(b) < 4 {
		return 0, errors.New("exec: short request")
	}
	n := binary.BigEndian.Uint32(b)
	if n < 2 || n > MaxPayload {
		return 0, fmt.Errorf("exec: bad request length %d", n)
	}
	return int(n) + 4, nil
}

// decodeExec is the inverse of encodeExec.
func decodeExec(b []byte) ([]string, error) {
	n, err := execLen(b)
	if err != nil {
		return nil, err
	}
	if len(b) != n {
		return nil, fmt.Errorf("exec: request of %d bytes, announced %d", len(b), n)
	}
	b = b[4:]
	if len(b) < 2 {
		return nil, errors.New("exec: short request")
	}
	n = int(binary.BigEndian.Uint16(b))
	b = b[2:]
	if n == 0 || n > maxArgs {
		return nil, fmt.Errorf("exec: bad argument count %d", n)
	}
	argv := make([]string, 0, n)
	for i := 0; i < n; i++ {
		if len(b) < 4 {
			return nil, errors.New("exec: truncated request")
		}
		l := binary.BigEndian.Uint32(b)
		b = b[4:]
		if uint64(l) > uint64(len(b)) {
			return nil, errors.New("exec: truncated argument")
		}
		argv = append(argv, string(b[:l]))
		b = b[l:]
	}
	if len(b) != 0 {
		return nil, errors.New("exec: trailing bytes in request")
	}
	return argv, nil
}

// encodeExit encodes an Exit payload.
func encodeExit(code int, msg string) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(int32(code)))
	if len(msg) > MaxPayload-4 {
		msg = msg[:MaxPayload-4]
	}
	return append(b, msg...)
}

func decodeExit(b []byte) (int, string, error) {
	if len(b) < 4 {
		return 0, "", errors.New("exit: short frame")
	}
	return int(int32(binary.BigEndian.Uint32(b))), string(b[4:]), nil
}
