"""Support tools: what a client's calls were, how one was priced, where the money went.

Library only (no Click): `cdrs` lists calls, `explain` tells one call's story,
`statement` puts the ledger and the usage of a period side by side. The CLI in
`voipctl.cli.support` parses options, calls these and prints.
"""
