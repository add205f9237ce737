"""FusionPBX: CDRs from its database or CSV export, levers through its database and ESL."""
