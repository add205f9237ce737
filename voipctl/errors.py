"""The exception tree of voipctl and the exit status of each.

The CLI maps every `VoipctlError` to its `exit_code` in one place
(`voipctl.cli.main`); nothing else in the package prints or exits.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILURES = 1
EXIT_USAGE = 2
EXIT_LOCKED = 75
# Ctrl-C: what a shell reports for a process ended by SIGINT (128 + 2).
EXIT_INTERRUPTED = 130


class VoipctlError(Exception):
    """Base of every error voipctl reports without a traceback."""

    exit_code = EXIT_FAILURES


class ConfigError(VoipctlError):
    """The configuration file, an environment variable or an option is wrong."""

    exit_code = EXIT_USAGE


class UsageError(VoipctlError):
    """A command was called with arguments that cannot work (unknown client, bad field)."""

    exit_code = EXIT_USAGE


class NotFound(UsageError):
    """A named client, product, service, CDR or invoice does not exist."""


class DataError(VoipctlError):
    """Input data is bad: a CSV row, a provider payload, a template."""


class SchemaOutOfDate(VoipctlError):
    """The database schema is older than this voipctl; run `voipctl db upgrade`."""

    exit_code = EXIT_USAGE


class LockHeld(VoipctlError):
    """Another run of the same job holds its lock."""

    exit_code = EXIT_LOCKED


class ProviderError(VoipctlError):
    """A PBX or carrier could not do what was asked."""

    def __init__(self, server: str, message: str):
        self.server = server
        super().__init__(f"{server}: {message}")


class ProviderAuthError(ProviderError):
    """The PBX or carrier refused the configured credentials."""


class ProviderUnavailable(ProviderError):
    """The PBX or carrier could not be reached or kept failing (timeouts, 5xx, 429)."""


class ProviderDataError(ProviderError, DataError):
    """The PBX or carrier answered with a payload that does not parse."""


class ManualActionRequired(ProviderError):
    """The provider has no API for the action: an operator must do `instructions` by hand.

    Raised by suspend/unsuspend levers such as LES.NET's `manual`: the action did not
    happen, so the caller records "manual action required" and tells the operator.
    """

    def __init__(self, server: str, instructions: str):
        self.instructions = instructions
        super().__init__(server, f"manual action required: {instructions}")


class BillingBackendError(VoipctlError):
    """The billing backend (WHMCS) refused or failed an action."""


class DuplicateReference(VoipctlError):
    """A ledger reference was used again with a different amount."""
