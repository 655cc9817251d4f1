"""Telemetry: the background NVML / CPU sampler and the engine's phase timer."""

from hedgespec_cli.telemetry.sampler import TelemetrySampler, decode_throttle_reasons, unavailable_message
from hedgespec_cli.telemetry.timers import PhaseTimer

__all__ = ["PhaseTimer", "TelemetrySampler", "decode_throttle_reasons", "unavailable_message"]
