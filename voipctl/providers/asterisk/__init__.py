"""Asterisk / FreePBX: call records from `Master.csv` (cdr_csv) or a `cdr` table.

The building blocks, each usable on its own (docs/asterisk.md):

- `master_csv`: the record layout cdr_csv writes, set by three cdr.conf flags and
  the PBX's time zone; one line or one table row -> a CallRecord, a Rejected, or a
  Skipped row (FreePBX writes several rows per call; one of them is billed).
- `offsets`: reading `Master.csv` from where the last run stopped, rotation seen.
- `table`: the same rows from FreePBX's `asteriskcdrdb.cdr` or cdr_pgsql's table.
"""
