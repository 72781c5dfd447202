"""Federated descriptive statistics ("Table 1") with disclosure control.

Pure functions plus the node-side summary; no orchestration is imported here (no transport/,
coordinator/ or node/), so the math can be checked against numpy on its own.

    spec.py        StatsSpec (fixed histogram bins, group column, k floor) and column descriptions
    disclosure.py  threshold k, primary + complementary cell suppression, subset guards
    release_log.py ReleaseLog: the site's record of released subsets (differencing guard)
    histogram.py   fixed-bin histograms, bin merging, quantiles with a stated error interval
    moments.py     per-site (n, mean, M2) and Chan et al.'s pairwise combination
    summary.py     SiteSummary: everything a site releases, already disclosure-controlled
    site.py        summarize(matrix, columns, spec, k, release_log) -> SiteSummary
    combine.py     combine(summaries) -> Table1 (per-site and pooled columns)
    table1.py      the Table1 result types
    report.py      render (Rich text) and write (CSV + JSON)
    wire.py        SiteSummary <-> named float64 arrays + JSON metadata (no pickle)
    secure_table.py   a secure query's fixed vector: layout, a site's values, 64-bit words
    secure_release.py the coordinator's disclosure control of the pooled sum; pooled Table 1

Flow: the site calls ``summarize`` on its own rows; only the returned ``SiteSummary`` leaves the
site; the coordinator calls ``combine`` on the summaries, which only adds up released numbers and
so can never un-hide a cell a site suppressed::

    log = ReleaseLog.in_state_dir(state_dir, study)                       # at each site
    summary = summarize(matrix, columns, spec, k=5, release_log=log,
                        site="A", person_ids=ids, attrition=[("entry", 912), ("cohort", 303)])
    arrays, meta = wire.to_arrays(summary)                                # -> coordinator
    table = combine([wire.from_arrays(a, m) for a, m in received], spec)  # at the coordinator
    report.write(table, out_dir); print(report.render(table))
"""
