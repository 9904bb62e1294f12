package experiment

// The words every service shares, defined once.
const (
	// RoleDark is the version under test: the experiment's baseline, which
	// receives the mirrored copies and is judged.
	RoleDark = "dark"
	// RoleLive is the version that serves users and is the reference.
	RoleLive = "live"
	// LiveVersion is the name of the live version in snapshots and in
	// status.analysis, beside the baseline's own name.
	LiveVersion = "live"
	// RevisionVariable is the baseline's versionInfo variable that names
	// its Knative revision, as in the seed (Iter8's convention): the router
	// checks that the Knative Service serves it, the collector puts it in
	// its PromQL.
	RevisionVariable = "revision"
	// PercentRange says what a mirrored share may be: (0, 100].
	PercentRange = "must be greater than 0 and at most 100"
)

// ValidPercent tells whether p is a share that can be mirrored, in
// (0, 100] (see PercentRange).
func ValidPercent(p float64) bool { return p > 0 && p <= 100 }

// BaselineRevision is the Knative revision of the dark version (the
// baseline's RevisionVariable), "" when the document does not name one.
func (e *Experiment) BaselineRevision() string {
	v, _ := e.BaselineVariable(RevisionVariable)
	return v
}
