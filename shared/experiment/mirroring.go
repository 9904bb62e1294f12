package experiment

// Mirroring is darklaunch's spec.mirroring.
type Mirroring struct {
	// Host is the HTTP host (authority) whose traffic is mirrored; the copies
	// carry Host "<host>-shadow" as Envoy sends them. With the proxy backend
	// a copy takes the protocol its request came in with (HTTP/1.1, or
	// HTTP/2 over h2c or TLS), as live does; a gRPC call's outcome, live's
	// and dark's, is its grpc-status (non-zero: failed).
	Host string `json:"host,omitempty"`
	// Percent of the host's requests copied to the dark version, in (0, 100].
	Percent *float64 `json:"percent,omitempty"`
	// LiveURL and DarkURL are the base URLs of the two versions (local mode).
	LiveURL string `json:"liveURL,omitempty"`
	DarkURL string `json:"darkURL,omitempty"`
	// LiveRevision names the live Knative revision (Kubernetes mode); by
	// default the one serving 100 % of the traffic.
	LiveRevision string `json:"liveRevision,omitempty"`
	// Methods that are mirrored. Default: GET, HEAD, OPTIONS, because
	// mirroring a write duplicates it. Every gRPC call is a POST: mirroring
	// gRPC needs POST here.
	Methods []string `json:"methods,omitempty"`
	// KeepHost (proxy backend) sends the copies with the request's own
	// Host instead of Envoy's "<host>-shadow", which breaks routing where
	// the dark version is reached by name; every copy is marked by the
	// header MirrorHeader either way. Istio's mirror always appends the
	// suffix, so the istio backend refuses it.
	KeepHost bool `json:"keepHost,omitempty"`
}

// MirrorHeader marks every copy the proxy sends to the dark version, so
// that the dark version (or what stands before it) can tell a copy from a
// request of its own: "Darklaunch-Mirror: <namespace>/<name>".
const MirrorHeader = "Darklaunch-Mirror"

// Load is darklaunch's spec.load: open-loop traffic at a fixed rate.
type Load struct {
	// URL requests are sent to (the router's proxy locally, the host through
	// the mesh on Kubernetes).
	URL string `json:"url,omitempty"`
	// Host header of the requests; by default spec.mirroring.host.
	Host string `json:"host,omitempty"`
	// Method of the requests; default GET.
	Method string `json:"method,omitempty"`
	// Rate in requests per second, up to MaxLoadRate; 0 sends nothing (real
	// traffic only).
	Rate *float64 `json:"rate,omitempty"`
	// Delay before the first request, counted from the experiment's start.
	Delay *Seconds `json:"delay,omitempty"`
	// Duration of the traffic; by default until the experiment ends.
	Duration *Seconds `json:"duration,omitempty"`
	// Concurrency bounds the requests in flight: loadgen's workers, each
	// with one kept-alive connection.
	Concurrency *int32 `json:"concurrency,omitempty"`
	// Timeout of one request.
	Timeout *Seconds `json:"timeout,omitempty"`
}
