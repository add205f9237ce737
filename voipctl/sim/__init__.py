"""The provider simulator behind `voipctl simulate`, `voipctl demo` and end-to-end tests."""

from voipctl.sim.server import (
    FusionTenant,
    LesnetAccount,
    LesnetPeer,
    SimConfig,
    Simulator,
    VodiaTenant,
)

__all__ = ["FusionTenant", "LesnetAccount", "LesnetPeer", "SimConfig", "Simulator", "VodiaTenant"]
