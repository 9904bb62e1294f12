package experiment

import (
	"fmt"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Confidence levels spec.criteria.confidence may take: above 0.5 (below it
// an interval says less than a coin) and below 1 (which no finite sample
// reaches).
const (
	MinConfidence = 0.5
	MaxConfidence = 1.0
)

func validateConfidence(p *field.Path, c *Criteria) field.ErrorList {
	var errs field.ErrorList
	if v := c.Confidence; v != nil && !(*v > MinConfidence && *v < MaxConfidence) {
		errs = append(errs, field.Invalid(p.Child("confidence"), *v, "must be above 0.5 and below 1, such as 0.95"))
	}
	if c.StopEarly && c.Confidence == nil {
		errs = append(errs, field.Required(p.Child("confidence"), "stopEarly needs a confidence level, such as 0.95: it stops when the verdict is conclusive at that level"))
	}
	return errs
}

// relativeMetrics can be compared with live: latencies by ratio, error-rate
// by difference. A count depends on the share mirrored, not on the version.
var relativeMetrics = []string{MetricMeanLatency, MetricP50Latency, MetricP95Latency, MetricP99Latency, MetricErrorRate}

func validateReference(op *field.Path, o Objective) field.ErrorList {
	switch {
	case o.Reference == "":
		return nil
	case o.Reference != ReferenceLive:
		return field.ErrorList{field.NotSupported(op.Child("reference"), o.Reference, []string{ReferenceLive})}
	}
	m, ok := LookupMetric(o.Metric)
	if ok && !slices.Contains(relativeMetrics, m.Name) {
		return field.ErrorList{field.Invalid(op.Child("reference"), o.Reference, fmt.Sprintf("%s cannot be compared with live: only %s", m.Name, strings.Join(relativeMetrics, ", ")))}
	}
	return nil
}
