package sketch

// ForEach calls f with the value and count of every non-empty bin, zero
// first, until f returns true. Each value is within RelativeAccuracy of every
// latency counted in its bin: package stats reads the bins to bound the mean
// (stats.SketchBins).
func (s *Sketch) ForEach(f func(value, count float64) (stop bool)) { s.s.ForEach(f) }
