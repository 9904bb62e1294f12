package stats

import (
	"testing"
	"time"
)

func TestExploreWidths(t *testing.T) {
	for _, d := range latencyDists {
		for _, n := range []int{20, 200, 5000} {
			r := newRand(1)
			var cov, covSeq, covT int
			var w, wSeq, wT float64
			start := time.Now()
			reps := 200
			for range reps {
				o := simulate(r, d, 0, n)
				b := o.bins(t)
				iv, err := MeanInterval(b, latencyRange, 0.95)
				if err != nil {
					t.Fatal(err)
				}
				sq, _ := MeanSequence(b, latencyRange, 0.95)
				tt, _ := StudentT(Moments{N: float64(o.n), Sum: o.sum, SumSq: o.sumSq}, 0.95)
				if iv.Contains(d.mean) {
					cov++
				}
				if sq.Contains(d.mean) {
					covSeq++
				}
				if tt.Contains(d.mean) {
					covT++
				}
				w += iv.Width()
				wSeq += sq.Width()
				wT += tt.Width()
			}
			f := float64(reps)
			t.Logf("%-10s n=%5d mean=%7.2f  bet %.3f w=%8.2f  seq %.3f w=%8.2f  t %.3f w=%8.2f  (%v)", d.name, n, d.mean,
				float64(cov)/f, w/f, float64(covSeq)/f, wSeq/f, float64(covT)/f, wT/f, time.Since(start)/time.Duration(reps))
		}
	}
}
