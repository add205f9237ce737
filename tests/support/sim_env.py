"""The provider simulator on a real port, as the end-to-end tests start it."""

from __future__ import annotations

from collections.abc import Iterator

from voipctl.sim import SimConfig, Simulator


def start_sim(monkeypatch, config: SimConfig) -> Iterator[Simulator]:
    """Start a simulator and put the secrets its config snippet names in the environment."""
    simulator = Simulator(config)
    simulator.start()
    try:
        for name, value in simulator.env().items():
            monkeypatch.setenv(name, value)
        # No FusionPBX database behind the simulator: a closed local port refuses at once.
        monkeypatch.setenv("SIM_FUSION_DB_URL", "postgresql://nobody@127.0.0.1:1/unused")
        yield simulator
    finally:
        simulator.stop()
