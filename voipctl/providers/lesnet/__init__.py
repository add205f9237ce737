"""LES.NET: CDRs from per-service CDR links; levers by command or by hand."""
