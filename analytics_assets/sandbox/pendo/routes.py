"""Placeholder: the pendo half's routes are being written."""

from analytics_assets.sandbox.state import SandboxHalf, SandboxState


def build_pendo(state: SandboxState) -> SandboxHalf:
    return SandboxHalf(name="pendo", regions=("us",), routes=lambda region: [])
