// Package services lists darklaunch's services: the one place a service is
// added. `darklaunch serve <name>` and the embedded stack both build every
// service from this list, through the convention of shared/service.
package services

import (
	"github.com/darklaunch/darklaunch/services/collector"
	"github.com/darklaunch/darklaunch/services/judge"
	"github.com/darklaunch/darklaunch/services/loadgen"
	"github.com/darklaunch/darklaunch/services/router"
	"github.com/darklaunch/darklaunch/shared/service"
)

// The services' names.
const (
	Router    = router.Name
	Loadgen   = loadgen.Name
	Collector = collector.Name
	Judge     = judge.Name
)

// All lists the services in the order a host builds them: the router before
// loadgen, whose default target is the router's proxy. Once built they may
// run in any order: each creates the streams and the bucket it needs.
func All() []service.Spec {
	return []service.Spec{router.Spec(), loadgen.Spec(), collector.Spec(), judge.Spec()}
}

// Names are the services' names, in the order of All.
func Names() []string {
	var names []string
	for _, s := range All() {
		names = append(names, s.Name)
	}
	return names
}

// Lookup returns the service named name.
func Lookup(name string) (service.Spec, bool) {
	for _, s := range All() {
		if s.Name == name {
			return s, true
		}
	}
	return service.Spec{}, false
}
