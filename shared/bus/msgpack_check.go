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
	pos := 0
	need := func(n uint64) error {
		if n > uint64(len(data)-pos) {
			return fmt.Errorf("msgpack: a length of %d at byte %d runs past the end of the %d-byte message", n, pos, len(data))
		}
		return nil
	}
	// readLen reads a big-endian length of size bytes at pos.
	readLen := func(size int) (uint64, error) {
		if err := need(uint64(size)); err != nil {
			return 0, err
		}
		var n uint64
		switch size {
		case 1:
			n = uint64(data[pos])
		case 2:
			n = uint64(binary.BigEndian.Uint16(data[pos:]))
		case 4:
			n = uint64(binary.BigEndian.Uint32(data[pos:]))
		}
		pos += size
		return n, nil
	}
	// skip checks and skips n payload bytes.
	skip := func(n uint64) error {
		if err := need(n); err != nil {
			return err
		}
		pos += int(n)
		return nil
	}
	// open starts a container of n elements: the next values read are its
	// elements.
	var stack []uint64 // elements left to read, per open container
	open := func(n uint64) error {
		// Every element takes at least one byte.
		if err := need(n); err != nil {
			return err
		}
		if n == 0 {
			return nil
		}
		if len(stack) >= maxMsgpackDepth {
			return fmt.Errorf("msgpack: nested more than %d deep", maxMsgpackDepth)
		}
		stack = append(stack, n)
		return nil
	}
	for {
		if pos >= len(data) {
			return errors.New("msgpack: message ends in the middle of a value")
		}
		c := data[pos]
		pos++
		depth := len(stack)
		var err error
		switch {
		case c <= 0x7f, c >= 0xe0, c == 0xc0, c == 0xc2, c == 0xc3: // fixint, nil, bool
		case c >= 0x80 && c <= 0x8f: // fixmap
			err = open(2 * uint64(c&0x0f))
		case c >= 0x90 && c <= 0x9f: // fixarray
			err = open(uint64(c & 0x0f))
		case c >= 0xa0 && c <= 0xbf: // fixstr
			err = skip(uint64(c & 0x1f))
		default:
			err = checkMsgpackCode(c, readLen, skip, open)
		}
		if err != nil {
			return err
		}
		if len(stack) > depth {
			continue // a container opened: its elements come next
		}
		// A value is complete: count it in its container, and close every
		// container it completes.
		for len(stack) > 0 {
			stack[len(stack)-1]--
			if stack[len(stack)-1] > 0 {
				break
			}
			stack = stack[:len(stack)-1]
		}
		if len(stack) == 0 {
			return nil
		}
	}
}

// checkMsgpackCode handles the codes with an explicit size (0xc1..0xdf).
func checkMsgpackCode(c byte, readLen func(int) (uint64, error), skip func(uint64) error, open func(uint64) error) error {
	sized := func(lenSize int, extra uint64, then func(uint64) error) error {
		n, err := readLen(lenSize)
		if err != nil {
			return err
		}
		return then(n + extra)
	}
	times2 := func(n uint64) error { return open(2 * n) }
	switch c {
	case 0xc4, 0xd9: // bin8, str8
		return sized(1, 0, skip)
	case 0xc5, 0xda: // bin16, str16
		return sized(2, 0, skip)
	case 0xc6, 0xdb: // bin32, str32
		return sized(4, 0, skip)
	case 0xc7: // ext8: length, type, data
		return sized(1, 1, skip)
	case 0xc8:
		return sized(2, 1, skip)
	case 0xc9:
		return sized(4, 1, skip)
	case 0xcc, 0xd0: // uint8, int8
		return skip(1)
	case 0xcd, 0xd1: // uint16, int16
		return skip(2)
	case 0xca, 0xce, 0xd2: // float32, uint32, int32
		return skip(4)
	case 0xcb, 0xcf, 0xd3: // float64, uint64, int64
		return skip(8)
	case 0xd4, 0xd5, 0xd6, 0xd7, 0xd8: // fixext 1, 2, 4, 8, 16: type + data
		return skip(1 + 1<<(c-0xd4))
	case 0xdc: // array16
		return sized(2, 0, open)
	case 0xdd: // array32
		return sized(4, 0, open)
	case 0xde: // map16
		return sized(2, 0, times2)
	case 0xdf: // map32
		return sized(4, 0, times2)
	}
	return fmt.Errorf("msgpack: 0x%02x is not a msgpack code", c)
}
