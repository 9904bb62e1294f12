package bus

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/darklaunch/darklaunch/shared/experiment"
)

// TestCheckMsgpack: every message darklaunch writes passes; lengths and
// counts a message cannot hold, and deep nesting, are refused before the
// decoder allocates anything.
func TestCheckMsgpack(t *testing.T) {
	now := time.Now().UTC()
	rate := 0.25
	for _, v := range []any{
		&Event{Type: EventMetrics, Time: now, Snapshot: &Snapshot{Iteration: 3, Role: RoleDark, Start: now, End: now,
			Values: map[string]*float64{experiment.MetricErrorRate: &rate, experiment.MetricMeanLatency: nil}, Errors: map[string]string{"mean-latency": "no data"}}},
		&ObservationBatch{UID: "u", Role: RoleLive, Count: 70000, SumMs: 1.5, Sketch: bytes.Repeat([]byte{7}, 70000), Dropped: map[string]int64{"inflight": -3}},
		&Event{Type: EventCreated, Time: now, Experiment: &experiment.Experiment{Metadata: experiment.Metadata{Name: strings.Repeat("n", 300), CreationTimestamp: &now}}},
		map[string]any{"a": []any{int64(-1 << 40), uint64(1 << 63), float32(1.5), nil, true, []any{}}, "b": map[string]any{}},
	} {
		b, err := Marshal(ContentTypeMsgpack, v)
		if err != nil {
			t.Fatal(err)
		}
		if err := checkMsgpack(b); err != nil {
			t.Errorf("%T: %v", v, err)
		}
		// Cut anywhere, it is refused (a short message never decodes).
		for _, cut := range []int{1, len(b) / 2, len(b) - 1} {
			if err := checkMsgpack(b[:cut]); err == nil {
				t.Errorf("%T cut to %d of %d bytes: accepted", v, cut, len(b))
			}
		}
	}
	deep := append(bytes.Repeat([]byte{0x91}, 65), 0x01) // [[[...[1]...]]], 65 levels
	for name, tc := range map[string]struct {
		data []byte
		want string
	}{
		"bin32 of 4 GiB":     {[]byte{0x81, 0xa1, 's', 0xc6, 0xff, 0xff, 0xff, 0xff, 0}, "runs past the end"},
		"str32 of 800 MiB":   {[]byte{0xdb, 0x30, 0x30, 0x30, 0x30, 'x'}, "runs past the end"},
		"array32 of 4 G":     {[]byte{0xdd, 0xff, 0xff, 0xff, 0xff, 0x01}, "runs past the end"},
		"map32 of 2 G":       {[]byte{0xdf, 0x7f, 0xff, 0xff, 0xff, 0x01, 0x01}, "runs past the end"},
		"fixmap short":       {[]byte{0x82, 0x01, 0x01, 0x01}, "runs past the end"},
		"nesting":            {deep, "nested more than 64 deep"},
		"reserved code":      {[]byte{0xc1}, "not a msgpack code"},
		"empty":              {nil, "ends in the middle"},
		"ext32 past the end": {[]byte{0xc9, 0, 0, 0, 9, 1, 2}, "runs past the end"},
	} {
		if err := checkMsgpack(tc.data); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err %v, want %q", name, err, tc.want)
		}
	}
	if err := checkMsgpack(deep[1:]); err != nil {
		t.Errorf("64 levels: %v, want accepted", err)
	}
}
