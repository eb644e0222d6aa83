// Package swar tests eight bytes at once in a uint64 ("SIMD within a
// register"): the JSON scanner and the CEF escaper use it to pass over
// runs of bytes that need no attention.
//
// Each test sets the high bit of every byte of the result whose byte in w
// matches. Whether any byte matches is exact, and so is the lowest one
// set; a borrow can also set bytes above a true match, so only the lowest
// may be trusted (bits.TrailingZeros64(m) / 8 is its index).
package swar

const (
	ones  = 0x0101010101010101
	highs = 0x8080808080808080
)

// Load is the eight bytes of b from i on, the first in the lowest byte.
func Load[T ~string | ~[]byte](b T, i int) uint64 {
	_ = b[i+7]
	return uint64(b[i]) | uint64(b[i+1])<<8 | uint64(b[i+2])<<16 | uint64(b[i+3])<<24 |
		uint64(b[i+4])<<32 | uint64(b[i+5])<<40 | uint64(b[i+6])<<48 | uint64(b[i+7])<<56
}

// Equal marks the bytes of w that are c.
func Equal(w uint64, c byte) uint64 {
	x := w ^ ones*uint64(c)
	return (x - ones) &^ x & highs
}

// Below marks the bytes of w that are less than n, for n up to 0x80.
func Below(w uint64, n byte) uint64 {
	return (w - ones*uint64(n)) &^ w & highs
}
