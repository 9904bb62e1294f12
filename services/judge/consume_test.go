package judge

import (
	"testing"
	"time"
)

// TestRetryBudget: the delay doubles with each delivery up to its cap; an
// event is dropped at this judge's max-th failure, or, when several judges
// share its failures, at twice max deliveries in all.
func TestRetryBudget(t *testing.T) {
	b := retryBudget{max: 8, failures: map[uint64]int{}}
	var delays []time.Duration
	for d := uint64(1); d <= 7; d++ {
		drop, delay := b.failed(1, d)
		if drop {
			t.Fatalf("dropped at failure %d of 8", d)
		}
		delays = append(delays, delay)
	}
	want := []time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second, 30 * time.Second}
	for i := range want {
		if delays[i] != want[i] {
			t.Errorf("delay after delivery %d: %v, want %v", i+1, delays[i], want[i])
		}
	}
	if drop, _ := b.failed(1, 8); !drop {
		t.Error("not dropped at the 8th failure")
	}
	if len(b.failures) != 0 {
		t.Errorf("a dropped event is still counted: %v", b.failures)
	}

	// Another event, failing at other judges too: this judge saw 3 of 16.
	for _, d := range []uint64{2, 9} {
		if drop, _ := b.failed(2, d); drop {
			t.Fatalf("dropped at delivery %d", d)
		}
	}
	if drop, _ := b.failed(2, 16); !drop {
		t.Error("not dropped at 16 deliveries")
	}
	b.failed(3, 1)
	b.forget(3)
	if len(b.failures) != 0 {
		t.Errorf("a handled event is still counted: %v", b.failures)
	}
}
