"""Emails: sandboxed templates, the outbox, and SMTP delivery."""
