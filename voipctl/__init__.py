"""voipctl: billing and suspension of prepaid VoIP customers."""

__version__ = "0.1.0"
