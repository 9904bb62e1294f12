// Package shared holds what every darklaunch service agrees on: the sentinel
// errors and their API codes. The experiment document, the bus contracts and
// the metric arithmetic live in the sub-packages experiment, bus and metrics.
package shared

import (
	"errors"
	"net/http"
)

// Sentinel errors shared by the services. Wrap them with %w; APICode maps
// them to the codes the experiments API replies with.
var (
	// ErrInvalid marks a document or request that cannot be accepted as sent.
	ErrInvalid = errors.New("invalid")
	// ErrNotFound marks an unknown experiment.
	ErrNotFound = errors.New("not found")
	// ErrConflict marks an experiment whose name is already running.
	ErrConflict = errors.New("conflict")
	// ErrTooLarge marks a payload over the API's size limit.
	ErrTooLarge = errors.New("payload too large")
)

// APICode returns the HTTP-style status code the experiments API uses for err:
// 400 for invalid input, 404 for an unknown experiment, 409 for a name that is
// already running, 413 for a payload that is too large and 500 otherwise.
func APICode(err error) int {
	switch {
	case err == nil:
		return http.StatusOK
	case errors.Is(err, ErrTooLarge):
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, ErrInvalid):
		return http.StatusBadRequest
	case errors.Is(err, ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, ErrConflict):
		return http.StatusConflict
	default:
		return http.StatusInternalServerError
	}
}
