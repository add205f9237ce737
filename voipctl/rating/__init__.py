"""Rating: from a dialled number to a cost (docs/rating.md).

numbers   normalisation of a number (§2)
patterns  exclude / suppress patterns (§3)
deck      deck CSV import, versions, overrides (§4)
matcher   longest-prefix match held in memory
cost      billable seconds and the exact cost of one call (§5)
rater     statuses (§6), free minutes, `Rater`: one call's values in, its rating out (no SQL)
load      `SessionSource`: what a `Rater` needs, read from the store
pull      `PullRater`, pull-cdrs' hook that rates calls as they are stored
(the bulk `rate_cdrs` is voipctl.jobs.rate; re-rating corrections are voipctl.billing.rerate)
quote     `rates quote|list|versions`
explain   `trace(session, cdr_id)`: the whole story of one call's rating, for `voipctl explain`
"""
