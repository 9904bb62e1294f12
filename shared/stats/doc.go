// Package stats is the statistics behind darklaunch's verdicts: confidence
// intervals for every metric (error rate, mean latency, percentiles),
// anytime-valid confidence sequences for stopping early, the three outcomes
// of an objective (satisfied, violated, inconclusive), how many more
// requests an inconclusive objective needs, and comparisons with the live
// version. It is pure arithmetic on the aggregates the collector already
// merges (counts, sums, latency sketches): no I/O, no clock, no randomness.
//
// The methods, and why each was chosen, are in docs/statistics.md. In short:
//
//   - error rate: Clopper-Pearson, the exact binomial interval (C. J.
//     Clopper, E. S. Pearson, Biometrika 26(4), 1934), which never covers
//     less than its level; Wilson's score interval (E. B. Wilson, JASA 22,
//     1927) is shorter but under-covers near 0 at small n.
//   - mean latency: a betting confidence interval for a mean bounded by the
//     request timeout (I. Waudby-Smith, A. Ramdas, "Estimating means of
//     bounded random variables by betting", JRSS-B 86(1), 2024; arXiv
//     2010.09686), computed exactly on the latency sketch's bins. It holds
//     its level for every distribution on [0, timeout], at every n, and is
//     at the same time a confidence sequence.
//   - percentiles: the distribution-free order-statistic interval (binomial
//     ranks), read from the sketch and widened by its relative accuracy.
//   - stopping early: confidence sequences (S. R. Howard, A. Ramdas,
//     J. McAuliffe, J. Sekhon, "Time-uniform, nonparametric, nonasymptotic
//     confidence sequences", Annals of Statistics 49(2), 2021): a mixture of
//     beta-binomial martingales for proportions and quantile ranks, the
//     betting mixture for means; by Ville's inequality, looking after every
//     iteration keeps the chance of ever excluding the true value at most
//     1 − confidence.
//
// Every function returns an error instead of panicking: ErrNoData when
// there is nothing to measure yet, ErrInvalid (wrapped, naming the
// argument) when an input cannot be right.
package stats
