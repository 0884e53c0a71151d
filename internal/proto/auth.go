package proto

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
)

// TCP control connections start with a challenge: the server sends
// <challenge nonce="HEX"/> (32 random bytes); the client answers
// <auth id="0" hmac="HEX"/> with HMAC-SHA256(password, nonce bytes). The
// password itself never crosses the wire. A wrong answer gets an error
// reply and the connection is closed.

// NewNonce returns a fresh challenge nonce in hex.
func NewNonce() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// AuthMAC computes the answer to a challenge.
func AuthMAC(password, nonceHex string) string {
	nonce, _ := hex.DecodeString(nonceHex)
	m := hmac.New(sha256.New, []byte(password))
	m.Write(nonce)
	return hex.EncodeToString(m.Sum(nil))
}

// CheckMAC compares an answer in constant time.
func CheckMAC(password, nonceHex, macHex string) bool {
	want, _ := hex.DecodeString(AuthMAC(password, nonceHex))
	got, err := hex.DecodeString(macHex)
	if err != nil {
		return false
	}
	return hmac.Equal(want, got)
}
