package tux

import (
	"bufio"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"cloonix/internal/wire"
)

// The t2t wire protocol (docs/protocol.md, section "t2t"): a handshake in
// which each side proves it knows the shared password with an HMAC over
// both sides' fresh nonces (the password never travels), then records.
//
//	listener -> dialer   HELLO  "CLXT2T" ver:u8 nonceL[32]
//	dialer   -> listener AUTH   "CLXT2T" ver:u8 nonceD[32] HMAC(pw, "t2t dialer"   | nonceL | nonceD)
//	listener -> dialer   RESULT status:u8  HMAC(pw, "t2t listener" | nonceD | nonceL) (zeros unless ok)
//	then both ways       RECORD type:u8 len:u24 payload[len]

// T2TVersion is the protocol version this cloonix speaks.
const T2TVersion = 1

// t2tMagic opens HELLO and AUTH, so garbage is recognised at once.
const t2tMagic = "CLXT2T"

// Sizes of the handshake messages.
const (
	nonceLen          = 32
	macLen            = sha256.Size
	helloLen          = len(t2tMagic) + 1 + nonceLen
	authLen           = helloLen + macLen
	resultLen         = 1 + macLen
	recHdrLen         = 4
	maxRecord         = 65535
	maxReason         = 1024
	t2tStatusOK       = 0
	t2tStatusVersion  = 1
	t2tStatusPassword = 2
)

// Record types.
const (
	recFrame     = 1
	recKeepalive = 2
	recClose     = 3
)

// Errors a handshake ends with; the switch maps them to sentences.
var (
	ErrT2TGarbage  = errors.New("the peer does not speak cloonix t2t")
	ErrT2TPassword = errors.New("wrong t2t password (the two switches must share it: --password or <password> in the config)")
	ErrT2TVersion  = errors.New("t2t protocol version mismatch")
)

func newNonce() []byte {
	b := make([]byte, nonceLen)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return b
}

func t2tMAC(pw []byte, label string, a, b []byte) []byte {
	m := hmac.New(sha256.New, pw)
	m.Write([]byte(label))
	m.Write(a)
	m.Write(b)
	return m.Sum(nil)
}

func encodeHello(nonce []byte) []byte {
	b := make([]byte, 0, helloLen)
	b = append(b, t2tMagic...)
	b = append(b, T2TVersion)
	return append(b, nonce...)
}

// parseHello checks a HELLO or the first part of an AUTH.
func parseHello(b []byte) (ver byte, nonce []byte, err error) {
	if len(b) < helloLen || string(b[:len(t2tMagic)]) != t2tMagic {
		return 0, nil, ErrT2TGarbage
	}
	ver = b[len(t2tMagic)]
	if ver != T2TVersion {
		return ver, nil, fmt.Errorf("%w: the peer speaks version %d, this cloonix %d", ErrT2TVersion, ver, T2TVersion)
	}
	return ver, b[len(t2tMagic)+1 : helloLen], nil
}

func encodeAuth(pw, nonceL, nonceD []byte) []byte {
	b := encodeHello(nonceD)
	return append(b, t2tMAC(pw, "t2t dialer", nonceL, nonceD)...)
}

// parseAuth checks an AUTH against the listener's nonce and password.
func parseAuth(b, pw, nonceL []byte) (nonceD []byte, err error) {
	if len(b) != authLen {
		return nil, ErrT2TGarbage
	}
	_, nonceD, err = parseHello(b[:helloLen])
	if err != nil {
		return nil, err
	}
	if !hmac.Equal(b[helloLen:], t2tMAC(pw, "t2t dialer", nonceL, nonceD)) {
		return nil, ErrT2TPassword
	}
	return nonceD, nil
}

func encodeResult(status byte, pw, nonceD, nonceL []byte) []byte {
	b := make([]byte, resultLen)
	b[0] = status
	if status == t2tStatusOK {
		copy(b[1:], t2tMAC(pw, "t2t listener", nonceD, nonceL))
	}
	return b
}

// parseResult checks the listener's answer, authenticating it in turn.
func parseResult(b, pw, nonceD, nonceL []byte) error {
	if len(b) != resultLen {
		return ErrT2TGarbage
	}
	switch b[0] {
	case t2tStatusOK:
	case t2tStatusVersion:
		return fmt.Errorf("%w: the peer refused version %d", ErrT2TVersion, T2TVersion)
	case t2tStatusPassword:
		return ErrT2TPassword
	default:
		return ErrT2TGarbage
	}
	if !hmac.Equal(b[1:], t2tMAC(pw, "t2t listener", nonceD, nonceL)) {
		return ErrT2TPassword
	}
	return nil
}

// putRecordHdr writes a record header into b[0:4].
func putRecordHdr(b []byte, typ byte, n int) {
	binary.BigEndian.PutUint32(b, uint32(typ)<<24|uint32(n))
}

// checkRecord validates a record header; see readRecord.
func checkRecord(v uint32) (byte, int, error) {
	typ, n := byte(v>>24), int(v&0xffffff)
	switch typ {
	case recFrame:
		if n < 14 || n > maxRecord {
			return 0, 0, fmt.Errorf("%w: frame record of %d bytes", ErrT2TGarbage, n)
		}
	case recKeepalive:
		if n != 0 {
			return 0, 0, fmt.Errorf("%w: keepalive of %d bytes", ErrT2TGarbage, n)
		}
	case recClose:
		if n > maxReason {
			return 0, 0, fmt.Errorf("%w: close reason of %d bytes", ErrT2TGarbage, n)
		}
	default:
		return 0, 0, fmt.Errorf("%w: record type %d", ErrT2TGarbage, typ)
	}
	return typ, n, nil
}

// nextRecord reads one record in place from a frameReader (the payload
// is valid until the next call).
func nextRecord(f *wire.FrameReader) (byte, []byte, error) {
	if err := f.Fill(recHdrLen); err != nil {
		return 0, nil, err
	}
	typ, n, err := checkRecord(binary.BigEndian.Uint32(f.Header()))
	if err != nil {
		return 0, nil, err
	}
	p, err := f.Take(n)
	if err != nil {
		return 0, nil, err
	}
	return typ, p, nil
}

// readRecord reads one record into buf (at least maxRecord long) and
// returns its type and payload. Malformed records are errors: the stream
// cannot be resynchronised, so the connection ends.
func readRecord(r *bufio.Reader, buf []byte) (byte, []byte, error) {
	var h [recHdrLen]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, nil, err
	}
	typ, n, err := checkRecord(binary.BigEndian.Uint32(h[:]))
	if err != nil {
		return 0, nil, err
	}
	if _, err := io.ReadFull(r, buf[:n]); err != nil {
		return 0, nil, err
	}
	return typ, buf[:n], nil
}
