package experiment_test

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"

	"github.com/darklaunch/darklaunch/shared"
	"github.com/darklaunch/darklaunch/shared/experiment"
)

// FuzzParse feeds arbitrary bytes to the document decoder: it must return a
// valid experiment or an error that is ErrInvalid or ErrTooLarge, never
// panic, and a valid experiment must survive a JSON round trip unchanged.
// The seed corpus is in testdata/fuzz/FuzzParse.
func FuzzParse(f *testing.F) {
	f.Add([]byte("apiVersion: iter8.tools/v2alpha1\nkind: Experiment\nmetadata: {name: a}\nspec: {target: a/b, strategy: {testingPattern: Conformance}, criteria: {objectives: [{metric: mean-latency, upperLimit: 5}]}}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		e, err := experiment.Parse(data)
		if err != nil {
			if !errors.Is(err, shared.ErrInvalid) && !errors.Is(err, shared.ErrTooLarge) {
				t.Fatalf("error is neither ErrInvalid nor ErrTooLarge: %v", err)
			}
			if err.Error() == "" {
				t.Fatal("empty error message")
			}
			return
		}
		if errs := e.Validate(); len(errs) > 0 {
			t.Fatalf("Parse returned an invalid experiment: %v", errs)
		}
		j, err := json.Marshal(e)
		if err != nil {
			t.Fatalf("marshal a parsed experiment: %v", err)
		}
		e2, err := experiment.Parse(j)
		if err != nil {
			t.Fatalf("re-parse %s: %v", j, err)
		}
		if !reflect.DeepEqual(e.Spec.Duration, e2.Spec.Duration) || e.Key() != e2.Key() || len(e.Spec.Criteria.Objectives) != len(e2.Spec.Criteria.Objectives) {
			t.Fatalf("round trip changed the experiment:\n%s", j)
		}
		for i, o := range e.Spec.Criteria.Objectives {
			o2 := e2.Spec.Criteria.Objectives[i]
			if (o.UpperLimit == nil) != (o2.UpperLimit == nil) || (o.UpperLimit != nil && o.UpperLimit.Cmp(o2.UpperLimit.Quantity) != 0) {
				t.Fatalf("objective %d upperLimit changed in round trip", i)
			}
		}
	})
}
