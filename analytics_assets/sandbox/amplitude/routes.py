"""Placeholder: the amplitude half's routes are being written."""

from analytics_assets.sandbox.state import SandboxHalf, SandboxState


def build_amplitude(state: SandboxState) -> SandboxHalf:
    return SandboxHalf(name="amplitude", regions=("us",), routes=lambda region: [])
