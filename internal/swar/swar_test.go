package swar

import (
	"math/bits"
	"math/rand/v2"
	"testing"
)

// Every test is held to a byte-by-byte loop: whether any byte matches,
// and which is the first.
func TestMatchesByteByByte(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	interesting := []byte{0, 0x1f, 0x20, '"', '\\', '=', '|', '\r', '\n', 0x7f, 0x80, 0xff}
	for range 200000 {
		var b [8]byte
		for i := range b {
			if rng.IntN(3) == 0 {
				b[i] = interesting[rng.IntN(len(interesting))]
			} else {
				b[i] = byte(rng.IntN(256))
			}
		}
		w := Load(b[:], 0)
		if s := Load(string(b[:]), 0); s != w {
			t.Fatalf("Load(string) = %#x, Load([]byte) = %#x", s, w)
		}
		for _, c := range interesting {
			check(t, "Equal", b, c, Equal(w, c), func(x byte) bool { return x == c })
			if c <= 0x80 {
				check(t, "Below", b, c, Below(w, c), func(x byte) bool { return x < c })
			}
		}
	}
}

func check(t *testing.T, name string, b [8]byte, c byte, mask uint64, match func(byte) bool) {
	t.Helper()
	first := 8
	for i := range b {
		if match(b[i]) {
			first = i
			break
		}
	}
	if got := bits.TrailingZeros64(mask) / 8; got != first {
		t.Fatalf("%s(% x, %#x): first match at %d, want %d", name, b, c, got, first)
	}
}
