package proxy

import (
	"math"
	"net/http"
	"strconv"
	"strings"
)

// gRPC through the proxy. A call is an HTTP/2 POST whose outcome is not its
// HTTP status (200 whenever the server answered) but grpc-status, in the
// trailers, or in the headers of a trailers-only response. live's answer
// passes through the reverse proxy unchanged, trailers included; the
// observed outcome of live and of dark is grpc-status read as the HTTP
// status gRPC's own gateway maps it to (grpcHTTPStatus): 0 (OK) is a
// success, anything else a failure of its class (UNAVAILABLE: 5xx,
// NOT_FOUND: 4xx), and a gRPC response without a grpc-status is no whole
// answer ("error").
//
// A call's request body is a stream: a unary or server-streaming call sends
// one message and ends it at once, a client-streaming one may send for
// minutes, a bidirectional one waits for answers in between. So the copy is
// not read up front, which would hold live until the client stopped
// sending: it is taken as live's proxy reads the body (teeBody, as for
// every request with a body), and sent when the body ends, if it ended
// within MirrorMaxBody and MirrorTimeout.
// Otherwise the copy is dropped ("body"). A unary call is copied as an HTTP
// request is; a client-streaming or bidirectional call that ends in time is
// replayed to dark as one request of every message the client sent.
// grpc-web (application/grpc-web*) carries its status in the body and is
// observed by its HTTP status like any HTTP request.

// isGRPC tells whether r is a gRPC call: HTTP/2 with content-type
// application/grpc or application/grpc+<codec>.
func isGRPC(r *http.Request) bool {
	return r.ProtoMajor == 2 && isGRPCContentType(r.Header.Get("Content-Type"))
}

func isGRPCContentType(ct string) bool {
	rest, ok := strings.CutPrefix(ct, "application/grpc")
	return ok && (rest == "" || rest[0] == '+' || rest[0] == ';')
}

// grpcOutcome is the status a response counts as: status itself unless it
// is a 200 of gRPC, whose grpc-status is then read from trailer, or from
// header (where a trailers-only response has it, and where the reverse
// proxy leaves live's trailers for the client: named as they are, or with
// http.TrailerPrefix). 0: a gRPC response without a grpc-status.
func grpcOutcome(status int, header, trailer http.Header) int {
	if status != http.StatusOK || !isGRPCContentType(header.Get("Content-Type")) {
		return status
	}
	v := trailer.Get("Grpc-Status")
	if v == "" {
		v = header.Get(http.TrailerPrefix + "Grpc-Status")
	}
	if v == "" {
		v = header.Get("Grpc-Status")
	}
	if v == "" {
		return 0
	}
	code, err := strconv.Atoi(v)
	if err != nil {
		return 0
	}
	return grpcHTTPStatus(code)
}

// grpcHTTPStatus maps a gRPC status code to an HTTP status as
// grpc-gateway's runtime.HTTPStatusFromCode does.
func grpcHTTPStatus(code int) int {
	switch code {
	case 0: // OK
		return http.StatusOK
	case 1: // CANCELLED
		return 499
	case 3, 9, 11: // INVALID_ARGUMENT, FAILED_PRECONDITION, OUT_OF_RANGE
		return http.StatusBadRequest
	case 4: // DEADLINE_EXCEEDED
		return http.StatusGatewayTimeout
	case 5: // NOT_FOUND
		return http.StatusNotFound
	case 6, 10: // ALREADY_EXISTS, ABORTED
		return http.StatusConflict
	case 7: // PERMISSION_DENIED
		return http.StatusForbidden
	case 8: // RESOURCE_EXHAUSTED
		return http.StatusTooManyRequests
	case 12: // UNIMPLEMENTED
		return http.StatusNotImplemented
	case 14: // UNAVAILABLE
		return http.StatusServiceUnavailable
	case 16: // UNAUTHENTICATED
		return http.StatusUnauthorized
	}
	return http.StatusInternalServerError // UNKNOWN, INTERNAL, DATA_LOSS, any other
}

// drainLimit is how much of a dark response is read: a gRPC response to
// its end (its status is in the trailers after the body; MirrorTimeout
// bounds the time), any other up to maxDrain.
func drainLimit(resp *http.Response) int64 {
	if resp.ProtoMajor == 2 && isGRPCContentType(resp.Header.Get("Content-Type")) {
		return math.MaxInt64
	}
	return maxDrain
}
