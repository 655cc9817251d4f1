"""Telemetry: the NVML path against a fake `pynvml` module, the CPU fallback, the phase timer.

The fake stands in for the NVML library at the boundary (the module object the
sampler is handed); the sampler's own logic runs for real.
"""

from __future__ import annotations

import json
import sys
import time
from types import SimpleNamespace

import pytest

from hedgespec_cli.telemetry import PhaseTimer, TelemetrySampler, decode_throttle_reasons, unavailable_message

MIB = 2**20


class FakeNVMLError(Exception):
    pass


class FakeNvml:
    """Two GPUs. GPU 0: 80% busy, 250 W, energy counter +250 J, idle only.
    GPU 1: 20% busy, 100 W, no energy counter, thermal + power capping after its first read.

    fail_after: the utilisation read raises `error` after that many calls.
    """

    NVMLError = FakeNVMLError
    NVML_CLOCK_SM = 1

    def __init__(self, *, fail_after: int | None = None, error: Exception | None = None,
                 event_api: bool = True) -> None:
        self.fail_after, self.error = fail_after, error or FakeNVMLError("GPU is lost")
        self.util_calls = 0
        self.mem_returned: dict[int, list[float]] = {0: [], 1: []}
        self.reason_calls = {0: 0, 1: 0}
        self.energy = {0: [1_000_000, 1_250_000]}  # mJ at start, at stop
        self.shutdown = False
        # Newer pynvml names the reasons "clocks event", older ones "throttle".
        name = "nvmlDeviceGetCurrentClocksEventReasons" if event_api else "nvmlDeviceGetCurrentClocksThrottleReasons"
        setattr(self, name, self._reasons)

    def nvmlInit(self):
        pass

    def nvmlShutdown(self):
        self.shutdown = True

    def nvmlDeviceGetCount(self):
        return 2

    def nvmlDeviceGetHandleByIndex(self, i):
        return ("handle", i)

    def nvmlDeviceGetName(self, h):
        return f"Fake GPU {h[1]}".encode()  # old pynvml returns bytes

    def nvmlDeviceGetUtilizationRates(self, h):
        self.util_calls += 1
        if self.fail_after is not None and self.util_calls > self.fail_after:
            raise self.error
        return SimpleNamespace(gpu=80 if h[1] == 0 else 20, memory=5)

    def nvmlDeviceGetMemoryInfo(self, h):
        used = (1000 + 10 * len(self.mem_returned[h[1]])) * MIB
        self.mem_returned[h[1]].append(used / MIB)
        return SimpleNamespace(used=used, total=80_000 * MIB, free=0)

    def nvmlDeviceGetPowerUsage(self, h):
        return 250_000 if h[1] == 0 else 100_000  # mW

    def nvmlDeviceGetClockInfo(self, h, kind):
        assert kind == self.NVML_CLOCK_SM
        return 1980 if h[1] == 0 else 1500

    def _reasons(self, h):
        self.reason_calls[h[1]] += 1
        if h[1] == 0:
            return 0x1  # idle
        return 0x0 if self.reason_calls[1] == 1 else 0x20 | 0x4  # sw thermal + sw power cap

    def nvmlDeviceGetTotalEnergyConsumption(self, h):
        if h[1] not in self.energy:
            raise FakeNVMLError("Not Supported")
        return self.energy[h[1]].pop(0)


def _run(sampler: TelemetrySampler, seconds: float = 0.08) -> dict:
    with sampler:
        time.sleep(seconds)
    return sampler.summary()


def test_decode_throttle_reasons():
    assert decode_throttle_reasons(0) == []
    assert decode_throttle_reasons(0x24) == ["sw_power_cap", "sw_thermal_slowdown"]
    assert decode_throttle_reasons(0x1 | 0x1000) == ["gpu_idle", "0x1000"]
    assert decode_throttle_reasons(0x600) == ["board_limit", "reliability"]  # pynvml's BoardLimit, Reliability


def test_nvml_path_summary_energy_and_throttling(tmp_path, monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    nvml = FakeNvml()
    sink = tmp_path / "telemetry.jsonl"
    s = _run(TelemetrySampler(interval_s=0.01, sink=sink, nvml=nvml))
    assert s["gpu_available"] is True and s["reason"] is None and s["errors"] == []
    g0, g1 = s["devices"]
    assert (g0["name"], g1["name"]) == ("Fake GPU 0", "Fake GPU 1")
    assert g0["samples"] == s["samples"] >= 2
    assert (g0["util_mean_pct"], g0["util_max_pct"], g1["util_mean_pct"]) == (80, 80, 20)
    assert g0["mem_peak_mib"] == max(nvml.mem_returned[0])
    assert (g0["power_mean_w"], g0["sm_clock_mean_mhz"], g1["sm_clock_min_mhz"]) == (250, 1980, 1500)
    # Energy: counter delta (1_250_000 - 1_000_000 mJ) on GPU 0 ...
    assert (g0["energy_j"], g0["energy_source"]) == (250.0, "counter")
    # ... and on GPU 1, which lacks the counter, 100 W integrated over the sampled span.
    lines = [json.loads(line) for line in sink.read_text().splitlines()]
    t1 = [r["t"] for r in lines if r["kind"] == "gpu" and r["device"] == 1]
    assert g1["energy_source"] == "power_integral"
    assert g1["energy_j"] == pytest.approx(100.0 * (t1[-1] - t1[0]))
    assert s["energy_j"] == pytest.approx(g0["energy_j"] + g1["energy_j"])
    assert g0["throttle_reasons"] == ["gpu_idle"] and not g0["throttled"]
    assert g1["throttle_reasons"] == ["sw_power_cap", "sw_thermal_slowdown"]
    assert g1["thermal_throttle"] and g1["power_throttle"] and s["throttled"]
    assert "energy_counter" in g1["unsupported"]
    assert nvml.shutdown
    # Every sample went to the sink with a timestamp in seconds since start.
    assert {r["kind"] for r in lines} == {"gpu", "cpu"}
    assert t1 == sorted(t1) and t1[0] < 0.05
    assert lines[0]["throttle"] == ["gpu_idle"]
    json.dumps(s, allow_nan=False)
    assert unavailable_message(s) is None


def test_older_throttle_api_and_callable_sink_and_visible_devices(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    records: list[dict] = []
    s = _run(TelemetrySampler(interval_s=0.01, sink=records.append, nvml=FakeNvml(event_api=False)), 0.03)
    assert [d["index"] for d in s["devices"]] == [1]
    assert s["devices"][0]["thermal_throttle"]
    assert {r["device"] for r in records if r["kind"] == "gpu"} == {1}


@pytest.mark.parametrize("error", [FakeNVMLError("GPU is lost"), RuntimeError("driver went away")])
def test_errors_mid_run_stop_sampling_quietly(tmp_path, monkeypatch, error):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    nvml = FakeNvml(fail_after=5, error=error)
    s = _run(TelemetrySampler(interval_s=0.005, sink=tmp_path / "t.jsonl", nvml=nvml), 0.1)
    assert s["stopped_early"] is True
    assert len(s["errors"]) == 1 and str(error) in s["errors"][0]
    assert 1 <= s["samples"] <= 3  # two util reads per tick; sampling ended at the failure
    assert s["devices"][0]["energy_j"] == 250.0  # the counter is still read at stop
    assert nvml.shutdown


def test_a_hung_nvml_call_blocks_neither_summary_nor_stop():
    class Hanging(FakeNvml):
        hang = 0.0

        def nvmlDeviceGetUtilizationRates(self, h):
            time.sleep(self.hang)
            return super().nvmlDeviceGetUtilizationRates(h)

        def nvmlDeviceGetTotalEnergyConsumption(self, h):
            time.sleep(self.hang)
            return super().nvmlDeviceGetTotalEnergyConsumption(h)

    fake = Hanging()
    sampler = TelemetrySampler(0.02, nvml=fake, stop_timeout_s=0.3).start()
    time.sleep(0.1)
    fake.hang = 2.0  # the driver stops answering
    time.sleep(0.1)
    t = time.monotonic()
    assert sampler.summary()["samples"] >= 1  # results.json is written after every prompt
    sampler.stop()
    assert time.monotonic() - t < 1.0  # not 2 s per hung call
    assert any("did not stop" in e for e in sampler.errors) and sampler.summary()["stopped_early"]


def test_only_the_runs_gpus_are_sampled_by_uuid():
    class WithUuids(FakeNvml):
        def nvmlDeviceGetUUID(self, h):
            return f"GPU-0000000{h[1]}-aaaa".encode()

    summary = _run(TelemetrySampler(0.02, nvml=WithUuids(), uuids=["GPU-00000001-aaaa"]))
    assert [d["index"] for d in summary["devices"]] == [1]  # not GPU 0, busy with somebody else's job
    summary = _run(TelemetrySampler(0.02, nvml=WithUuids(), uuids=["MIG-unknown"]))
    assert [d["index"] for d in summary["devices"]] == [0, 1]  # no match: over-report rather than hide


def test_a_field_that_turns_unsupported_mid_run_is_dropped_not_the_run():
    class NotSupported(FakeNVMLError):
        pass

    class Flaky(FakeNvml):
        NVMLError_NotSupported = NotSupported
        power_calls = 0

        def nvmlDeviceGetPowerUsage(self, h):
            self.power_calls += 1
            if self.power_calls > 4:  # probed fine at start, then the board stops reporting it
                raise NotSupported("Not Supported")
            return super().nvmlDeviceGetPowerUsage(h)

    summary = _run(TelemetrySampler(0.01, nvml=Flaky()), seconds=0.2)
    assert not summary["stopped_early"] and summary["samples"] > 5
    assert all("power_w" in d["unsupported"] for d in summary["devices"])
    assert all(d["util_mean_pct"] is not None for d in summary["devices"])  # the other fields go on
    gpu1 = summary["devices"][1]  # no energy counter: a power integral cut short is no energy figure
    assert gpu1["energy_j"] is None and gpu1["energy_source"] is None


def test_failing_sink_does_not_crash():
    def sink(rec):
        raise OSError(28, "No space left on device")

    s = _run(TelemetrySampler(interval_s=0.01, sink=sink, nvml=FakeNvml()), 0.03)
    assert s["stopped_early"] and "No space left" in s["errors"][0]


def test_nvml_init_failure_falls_back_to_cpu(tmp_path):
    class Broken(FakeNvml):
        def nvmlInit(self):
            raise FakeNVMLError("NVML Shared Library Not Found")

    sink = tmp_path / "telemetry.jsonl"
    with TelemetrySampler(interval_s=0.01, sink=sink, nvml=Broken()) as t:
        end = time.monotonic() + 0.15
        while time.monotonic() < end:  # keep a core busy so CPU % is clearly positive
            sum(range(1000))
    s = t.summary()
    assert s["gpu_available"] is False and s["devices"] == []
    assert "NVML Shared Library Not Found" in s["reason"]
    assert unavailable_message(s).startswith("GPU telemetry unavailable: NVML could not start")
    cpu = s["cpu"]
    assert 0 < cpu["cpu_mean_pct"] < 100 * cpu["cpu_count"] + 50  # > 0: it spun (a loaded machine gives it little)
    assert cpu["peak_rss_mib"] > 1 and cpu["peak_rss_mib"] >= cpu["rss_max_mib"] * 0.99
    lines = [json.loads(line) for line in sink.read_text().splitlines()]
    assert lines and all(r["kind"] == "cpu" for r in lines)
    assert lines[0]["cpu_pct"] is None and lines[-1]["cpu_pct"] > 0  # no interval before the first
    json.dumps(s, allow_nan=False)


def test_missing_pynvml_module(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # makes `import pynvml` raise ImportError
    s = _run(TelemetrySampler(interval_s=0.01), 0.02)
    assert s["gpu_available"] is False and "not installed" in s["reason"]


def test_default_nvml_on_this_machine(tmp_path):
    """Real pynvml: on a machine without NVML this is the CPU fallback; either way no crash."""
    s = _run(TelemetrySampler(interval_s=0.01, sink=tmp_path / "t.jsonl"), 0.03)
    assert s["samples"] >= 2 and s["errors"] == []
    assert s["gpu_available"] == bool(s["devices"])
    assert s["gpu_available"] or s["reason"]


def test_phase_timer_accumulates_laps():
    timer = PhaseTimer()
    timer.mark()
    time.sleep(0.002)
    a = timer.lap("draft")
    timer.lap("verify")
    time.sleep(0.001)
    timer.lap("draft")
    timer.add("evaluate", 5)
    assert a >= 2_000_000
    assert timer.totals_ns["draft"] >= 3_000_000 and timer.totals_ns["evaluate"] == 5
    assert timer.total_ns() == sum(timer.totals_ns.values())
    assert timer.seconds()["draft"] == timer.totals_ns["draft"] / 1e9
    timer.reset()
    assert timer.totals_ns == {}


def test_phase_timer_synchronizes_cuda_device(monkeypatch):
    torch = pytest.importorskip("torch")
    calls = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: calls.append(device))
    timer = PhaseTimer("cuda:1")
    calls.clear()
    timer.lap("verify")
    assert calls == ["cuda:1"]
    calls.clear()
    PhaseTimer(torch.device("cpu")).lap("verify")
    assert calls == []


def test_phase_timer_is_cheap():
    timer = PhaseTimer()
    n = 20_000
    start = time.perf_counter_ns()
    for _ in range(n):
        timer.lap("draft")
    per_lap_ns = (time.perf_counter_ns() - start) / n
    assert per_lap_ns < 20_000  # generous for a loaded CI core; ~0.2 us in practice


def test_telemetry_table_renders_both_cases(monkeypatch):
    from rich.console import Console

    from hedgespec_cli.report.render import telemetry_table

    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    gpu = _run(TelemetrySampler(interval_s=0.01, nvml=FakeNvml()), 0.03)
    console = Console(width=160, record=True)
    console.print(telemetry_table(gpu))
    text = console.export_text()
    assert "Fake GPU 1" in text and "sw_power_cap, sw_thermal_slowdown" in text and "(integ.)" in text

    class Broken(FakeNvml):
        def nvmlInit(self):
            raise FakeNVMLError("Driver Not Loaded")

    line = telemetry_table(_run(TelemetrySampler(interval_s=0.01, nvml=Broken()), 0.02))
    assert isinstance(line, str) and line.startswith("GPU telemetry unavailable: NVML could not start")
    assert "peak RSS" in line
