"""The cron jobs: each composes providers, rating, billing and notify."""
