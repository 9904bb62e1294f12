package shared

import (
	"fmt"
	"strconv"
	"unicode/utf8"
)

// ExcerptBytes is how much of a bad input an error message quotes.
const ExcerptBytes = 64

// Excerpt quotes s for an error message that names what it was given: the
// whole of s when it is short, else its first ExcerptBytes bytes and its
// length. Whatever it was given (a request from anyone on the bus, an HTTP
// Host header), the message stays short and on one line.
func Excerpt(s string) string {
	if len(s) <= ExcerptBytes {
		return strconv.Quote(s)
	}
	return fmt.Sprintf("%s… (%d bytes)", strconv.Quote(s[:cutAt(s, ExcerptBytes)]), len(s))
}

// Clip cuts a message that may hold input (a decoder's error, a field
// problem's detail) to at most n bytes, marking the cut.
func Clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:cutAt(s, n)] + "…"
}

// cutAt is n, or a little less so that s[:n] does not split a character.
func cutAt(s string, n int) int {
	for i := 0; i < utf8.UTFMax && n > 0 && !utf8.RuneStart(s[n]); i++ {
		n--
	}
	return n
}
