"""A local emulator of the Pendo and Amplitude APIs, for the demo and the tests.

Nothing in the product imports this package; only tests, the CLI and benchmarks do.
"""

from analytics_assets.sandbox.config import SandboxConfig
from analytics_assets.sandbox.server import SandboxServer, SandboxUrls, build_app

__all__ = ["SandboxConfig", "SandboxServer", "SandboxUrls", "build_app"]
