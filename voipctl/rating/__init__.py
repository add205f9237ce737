"""Rating: from a dialled number to a cost (docs/rating.md).

numbers   normalisation of a number (§2)
patterns  exclude / suppress patterns (§3)
deck      deck CSV import, versions, overrides (§4)
matcher   longest-prefix match held in memory
cost      billable seconds and the exact cost of one call (§5)
engine    statuses (§6), free minutes, `Rater` for one-pass rating, bulk `rate_cdrs` and
          re-rating (§7)
quote     `rates quote|list|versions`
explain   `trace(session, cdr_id)`: the whole story of one call's rating, for `voipctl explain`
"""
