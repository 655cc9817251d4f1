"""NVML device readers for the telemetry sampler.

`GpuReader` wraps one NVML device handle: it probes which fields the device
supports once, then reads utilisation, memory, power, SM clock and clock event
reasons per sample and keeps running statistics, so that a long run does not
hold every sample in memory. The NVML module is passed in (tests use a fake).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

Record = dict[str, Any]

# NVML clock event reason bits (nvmlClocksEventReason*, formerly ...ThrottleReason*).
THROTTLE_BITS: tuple[tuple[int, str], ...] = (
    (0x001, "gpu_idle"),
    (0x002, "applications_clocks_setting"),
    (0x004, "sw_power_cap"),
    (0x008, "hw_slowdown"),
    (0x010, "sync_boost"),
    (0x020, "sw_thermal_slowdown"),
    (0x040, "hw_thermal_slowdown"),
    (0x080, "hw_power_brake_slowdown"),
    (0x100, "display_clock_setting"),
    (0x200, "board_limit"),
    (0x400, "reliability"),
)
_KNOWN_BITS = sum(bit for bit, _ in THROTTLE_BITS)
THERMAL_REASONS = frozenset({"sw_thermal_slowdown", "hw_thermal_slowdown"})
POWER_REASONS = frozenset({"sw_power_cap", "hw_power_brake_slowdown"})
# hw_slowdown halves the clocks for heat or an external power brake, board_limit
# and reliability cap them for the board's limits or lifetime: throttling all.
# Idle, sync boost and clock settings are not throttling.
THROTTLING_REASONS = THERMAL_REASONS | POWER_REASONS | {"hw_slowdown", "board_limit", "reliability"}


def decode_throttle_reasons(mask: int) -> list[str]:
    """Names of the bits set in an NVML clock event reason mask (unknown bits as hex)."""
    names = [name for bit, name in THROTTLE_BITS if mask & bit]
    if mask & ~_KNOWN_BITS:
        names.append(hex(mask & ~_KNOWN_BITS))
    return names


def visible_indices(nvml: Any, count: int) -> list[int]:
    """NVML indices of the GPUs this process may use, after CUDA_VISIBLE_DEVICES.

    Integer entries are taken as NVML indices (exact with
    CUDA_DEVICE_ORDER=PCI_BUS_ID), `GPU-...` entries are matched by UUID prefix.
    Entries that cannot be resolved leave every GPU visible, which over-reports
    rather than hiding a device.
    """
    spec = os.environ.get("CUDA_VISIBLE_DEVICES")
    if spec is None:
        return list(range(count))
    picked: list[int] = []
    for token in (s.strip() for s in spec.split(",")):
        if not token:
            continue
        if token.lstrip("-").isdigit():
            if int(token) < 0:  # CUDA stops at the first invalid index
                break
            if int(token) < count:
                picked.append(int(token))
            continue
        try:
            uuids = [as_text(nvml.nvmlDeviceGetUUID(nvml.nvmlDeviceGetHandleByIndex(i))) for i in range(count)]
        except Exception:  # any NVML failure here only costs the filtering
            return list(range(count))
        match = [i for i, u in enumerate(uuids) if u.startswith(token)]
        if len(match) != 1:
            return list(range(count))
        picked.append(match[0])
    return list(dict.fromkeys(picked))


def as_text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class GpuReader:
    """One NVML device: the readers it supports and its running statistics."""

    def __init__(self, nvml: Any, index: int, nvml_error: type[BaseException]) -> None:
        h = nvml.nvmlDeviceGetHandleByIndex(index)
        self.index = index
        self._not_supported = getattr(nvml, "NVMLError_NotSupported", None)
        self.name = as_text(nvml.nvmlDeviceGetName(h))
        reasons = getattr(nvml, "nvmlDeviceGetCurrentClocksEventReasons", None) or getattr(
            nvml, "nvmlDeviceGetCurrentClocksThrottleReasons", None
        )
        sm = getattr(nvml, "NVML_CLOCK_SM", 1)
        candidates: dict[str, Callable[[], Any]] = {
            "util_pct": lambda: nvml.nvmlDeviceGetUtilizationRates(h).gpu,
            "mem_used_mib": lambda: nvml.nvmlDeviceGetMemoryInfo(h).used / 2**20,
            "power_w": lambda: nvml.nvmlDeviceGetPowerUsage(h) / 1000.0,  # mW
            "sm_clock_mhz": lambda: nvml.nvmlDeviceGetClockInfo(h, sm),
        }
        if reasons is not None:
            candidates["throttle_mask"] = lambda: reasons(h)
        self.energy_mj = lambda: nvml.nvmlDeviceGetTotalEnergyConsumption(h)  # mJ since driver load
        # Probe once: a field this GPU does not support is skipped from now on
        # instead of failing every sample (consumer boards lack power, etc.).
        self.readers: dict[str, Callable[[], Any]] = {}
        self.unsupported: list[str] = [] if reasons is not None else ["throttle_mask"]
        for key, read in candidates.items():
            try:
                read()
                self.readers[key] = read
            except (nvml_error, AttributeError):
                self.unsupported.append(key)
        try:
            self.energy_start: int | None = int(self.energy_mj())
        except (nvml_error, AttributeError):
            self.energy_start = None
            self.unsupported.append("energy_counter")
        self.energy_end: int | None = None
        self.n = 0
        self.sums = dict.fromkeys(("util_pct", "power_w", "sm_clock_mhz"), 0.0)
        self.maxs: dict[str, float] = {}
        self.sm_clock_min: float | None = None
        self.reasons_seen: set[str] = set()
        self.power_j = 0.0  # trapezoid integral of power, the fallback for energy
        self._last_power: tuple[float, float] | None = None

    def read(self, t: float) -> Record:
        """One sample's NVML calls (the only part that can block: the sampler holds no lock here).

        A field that turns NotSupported mid-run (MIG, some boards' power) is dropped
        and the others go on; any other NVML error raises (the sampler stops)."""
        rec: Record = {"t": t, "kind": "gpu", "device": self.index}
        for key, read in list(self.readers.items()):
            try:
                rec[key] = read()
            except Exception as err:
                if self._not_supported is None or not isinstance(err, self._not_supported):
                    raise
                del self.readers[key]
                self.unsupported.append(key)
        return rec

    def add(self, rec: Record) -> Record:
        """Account one sample from `read` in the running statistics; returns it with throttle names."""
        t = rec["t"]
        self.n += 1
        for key in ("util_pct", "power_w", "sm_clock_mhz", "mem_used_mib"):
            if key in rec:
                if key in self.sums:
                    self.sums[key] += rec[key]
                self.maxs[key] = max(self.maxs.get(key, rec[key]), rec[key])
        if "sm_clock_mhz" in rec and (self.sm_clock_min is None or rec["sm_clock_mhz"] < self.sm_clock_min):
            self.sm_clock_min = rec["sm_clock_mhz"]
        if "power_w" in rec:
            if self._last_power is not None:
                t0, p0 = self._last_power
                self.power_j += 0.5 * (p0 + rec["power_w"]) * (t - t0)
            self._last_power = (t, rec["power_w"])
        if "throttle_mask" in rec:
            rec["throttle"] = decode_throttle_reasons(int(rec.pop("throttle_mask")))
            self.reasons_seen.update(rec["throttle"])
        return rec

    def summary(self) -> Record:
        mean = {k: (self.sums[k] / self.n if self.n and k in self.maxs else None) for k in self.sums}
        if self.energy_start is not None and self.energy_end is not None and self.energy_end >= self.energy_start:
            energy, source = (self.energy_end - self.energy_start) / 1000.0, "counter"
        elif self._last_power is not None and "power_w" not in self.unsupported:  # else the integral stops early
            energy, source = self.power_j, "power_integral"
        else:
            energy, source = None, None
        return {
            "index": self.index,
            "name": self.name,
            "samples": self.n,
            "util_mean_pct": mean["util_pct"],
            "util_max_pct": self.maxs.get("util_pct"),
            "mem_peak_mib": self.maxs.get("mem_used_mib"),
            "power_mean_w": mean["power_w"],
            "power_max_w": self.maxs.get("power_w"),
            "sm_clock_mean_mhz": mean["sm_clock_mhz"],
            "sm_clock_min_mhz": self.sm_clock_min,
            "energy_j": energy,
            "energy_source": source,
            "throttle_reasons": sorted(self.reasons_seen),
            "thermal_throttle": bool(self.reasons_seen & THERMAL_REASONS),
            "power_throttle": bool(self.reasons_seen & POWER_REASONS),
            "throttled": bool(self.reasons_seen & THROTTLING_REASONS),
            "unsupported": list(self.unsupported),
        }
