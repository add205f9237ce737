"""Credit: the ledger, invoices, and the billing backend (local or WHMCS)."""
