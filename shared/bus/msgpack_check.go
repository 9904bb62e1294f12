package bus

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// maxMsgpackDepth bounds the nesting of a message: darklaunch's deepest
// (an event holding an experiment's status) is about 8 levels.
const maxMsgpackDepth = 64

// checkMsgpack walks one msgpack value in data and checks that every length
// and element count it declares fits in the bytes that follow, and that it
// nests at most maxMsgpackDepth deep. msgpack v5 allocates a bin's declared
// length before reading it (readN), so a 10-byte message declaring a 4 GiB
// []byte would take 4 GiB (found by FuzzAggregateAdd); and it recurses once
// per level. This guard runs before the decoder sees a message from the bus.
func checkMsgpack(data []byte) error {
	w := &msgpackWalker{data: data}
	for {
		if w.pos >= len(data) {
			return errors.New("msgpack: message ends in the middle of a value")
		}
		c := data[w.pos]
		w.pos++
		depth := len(w.stack)
		if err := w.value(c); err != nil {
			return err
		}
		if len(w.stack) > depth {
			continue // a container opened: its elements come next
		}
		// A value is complete: count it in its container, and close every
		// container it completes.
		for len(w.stack) > 0 {
			w.stack[len(w.stack)-1]--
			if w.stack[len(w.stack)-1] > 0 {
				break
			}
			w.stack = w.stack[:len(w.stack)-1]
		}
		if len(w.stack) == 0 {
			return nil
		}
	}
}

// msgpackWalker is checkMsgpack's position in the message and its open
// containers (elements left to read in each).
type msgpackWalker struct {
	data  []byte
	pos   int
	stack []uint64
}

// need checks that n more bytes follow.
func (w *msgpackWalker) need(n uint64) error {
	if n > uint64(len(w.data)-w.pos) {
		return fmt.Errorf("msgpack: a length of %d at byte %d runs past the end of the %d-byte message", n, w.pos, len(w.data))
	}
	return nil
}

// length reads a big-endian length of size 1, 2 or 4 bytes.
func (w *msgpackWalker) length(size int) (uint64, error) {
	if err := w.need(uint64(size)); err != nil {
		return 0, err
	}
	var n uint64
	switch size {
	case 1:
		n = uint64(w.data[w.pos])
	case 2:
		n = uint64(binary.BigEndian.Uint16(w.data[w.pos:]))
	case 4:
		n = uint64(binary.BigEndian.Uint32(w.data[w.pos:]))
	}
	w.pos += size
	return n, nil
}

// skip checks and skips n payload bytes.
func (w *msgpackWalker) skip(n uint64) error {
	if err := w.need(n); err != nil {
		return err
	}
	w.pos += int(n)
	return nil
}

// open starts a container of n elements: the next values read are its
// elements.
func (w *msgpackWalker) open(n uint64) error {
	if err := w.need(n); err != nil { // every element takes at least one byte
		return err
	}
	if n == 0 {
		return nil
	}
	if len(w.stack) >= maxMsgpackDepth {
		return fmt.Errorf("msgpack: nested more than %d deep", maxMsgpackDepth)
	}
	w.stack = append(w.stack, n)
	return nil
}

// sized reads a length of lenSize bytes and hands length+extra to then.
func (w *msgpackWalker) sized(lenSize int, extra uint64, then func(uint64) error) error {
	n, err := w.length(lenSize)
	if err != nil {
		return err
	}
	return then(n + extra)
}

// value checks the value that code c starts.
func (w *msgpackWalker) value(c byte) error {
	switch {
	case c <= 0x7f, c >= 0xe0, c == 0xc0, c == 0xc2, c == 0xc3: // fixint, nil, bool
		return nil
	case c >= 0x80 && c <= 0x8f: // fixmap
		return w.open(2 * uint64(c&0x0f))
	case c >= 0x90 && c <= 0x9f: // fixarray
		return w.open(uint64(c & 0x0f))
	case c >= 0xa0 && c <= 0xbf: // fixstr
		return w.skip(uint64(c & 0x1f))
	}
	pairs := func(n uint64) error { return w.open(2 * n) }
	switch c {
	case 0xc4, 0xd9: // bin8, str8
		return w.sized(1, 0, w.skip)
	case 0xc5, 0xda: // bin16, str16
		return w.sized(2, 0, w.skip)
	case 0xc6, 0xdb: // bin32, str32
		return w.sized(4, 0, w.skip)
	case 0xc7: // ext8: length, type, data
		return w.sized(1, 1, w.skip)
	case 0xc8:
		return w.sized(2, 1, w.skip)
	case 0xc9:
		return w.sized(4, 1, w.skip)
	case 0xcc, 0xd0: // uint8, int8
		return w.skip(1)
	case 0xcd, 0xd1: // uint16, int16
		return w.skip(2)
	case 0xca, 0xce, 0xd2: // float32, uint32, int32
		return w.skip(4)
	case 0xcb, 0xcf, 0xd3: // float64, uint64, int64
		return w.skip(8)
	case 0xd4, 0xd5, 0xd6, 0xd7, 0xd8: // fixext 1, 2, 4, 8, 16: type + data
		return w.skip(1 + 1<<(c-0xd4))
	case 0xdc: // array16
		return w.sized(2, 0, w.open)
	case 0xdd: // array32
		return w.sized(4, 0, w.open)
	case 0xde: // map16
		return w.sized(2, 0, pairs)
	case 0xdf: // map32
		return w.sized(4, 0, pairs)
	}
	return fmt.Errorf("msgpack: 0x%02x is not a msgpack code", c)
}
