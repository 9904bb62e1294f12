package istio

// ExperimentLabel is experimentLabel, for the tests in package istio_test.
var ExperimentLabel = experimentLabel
