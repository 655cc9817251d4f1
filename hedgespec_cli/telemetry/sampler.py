"""A background sampler of device telemetry (DESIGN.md section 7).

With NVML it reads, per visible GPU and every `interval_s`: utilisation,
memory used, power, SM clock and the clock event ("throttle") reasons; energy
is the delta of the total-energy counter between start and stop, or the
integral of the power samples where the counter is unsupported. Without NVML
it records the process's CPU utilisation and resident memory instead, and says
why GPU telemetry was unavailable.

Telemetry must never take a benchmark down: NVML missing or failing at start
means the CPU fallback, an error while sampling is recorded and sampling stops
quietly, and `stop()` never raises.

    with TelemetrySampler(interval_s=0.1, sink=run.file("telemetry.jsonl")) as t:
        ...
    summary = t.summary()   # JSON-ready dict for results.json["telemetry"]
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

from hedgespec_cli.files import dumps_json
from hedgespec_cli.telemetry.nvml import GpuReader, Record, as_text, decode_throttle_reasons, visible_indices

Sink = Callable[[Record], None]
__all__ = ["TelemetrySampler", "decode_throttle_reasons", "peak_rss_mib", "unavailable_message"]


def _rss_mib() -> float | None:
    """Current resident set size from /proc (Linux); None elsewhere."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mib() -> float | None:
    """The process's peak resident memory so far (getrusage, else /proc VmHWM)."""
    try:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes vs KiB
    except (ImportError, OSError):
        pass
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**10
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cpu_seconds() -> float:
    # User + system CPU time of this process, all threads. Like os.times() but
    # with ns resolution, where os.times() ticks at 10 ms: too coarse for 0.1 s windows.
    return time.process_time()


class TelemetrySampler:
    """Samples telemetry on a daemon thread between `start()` and `stop()`.

    sink: a callable taking each sample record, or a path to append JSONL to
        (each line has `t`, seconds since start, and `kind` "gpu" or "cpu").
    nvml: the NVML module (default: `import pynvml`); tests pass a fake.
    devices: NVML indices to sample (default: those CUDA_VISIBLE_DEVICES allows).
    uuids: sample only the GPUs with these NVML UUIDs ("GPU-..."), e.g. the
        run's CUDA devices; when none matches, fall back to `devices`' default.
    stop_timeout_s: how long `stop()` waits for a sampler stuck in a driver call
        (default: 5 s or 10 intervals); then it gives up on it and returns.
    """

    def __init__(
        self,
        interval_s: float = 0.1,
        sink: Sink | str | Path | None = None,
        nvml: Any = None,
        *,
        devices: Sequence[int] | None = None,
        uuids: Sequence[str] | None = None,
        stop_timeout_s: float | None = None,
    ) -> None:
        if not interval_s > 0:
            raise ValueError(f"interval_s must be positive, got {interval_s}")
        self.interval_s = float(interval_s)
        self._sink_arg = sink
        self._nvml_arg = nvml
        self._devices_arg = devices
        self._uuids_arg = list(uuids) if uuids else None
        self.stop_timeout_s = max(5.0, 10 * self.interval_s) if stop_timeout_s is None else stop_timeout_s
        self._nvml: Any = None
        self._gpus: list[GpuReader] = []
        self.gpu_reason: str | None = None
        self.errors: list[str] = []
        self._failed = False
        self._lock = threading.Lock()
        self._stop_event = threading.Event()
        self._thread: threading.Thread | None = None
        self._file: IO[str] | None = None
        self._sink: Sink | None = None
        self._t0 = 0.0
        self._duration: float | None = None
        self._ticks = 0
        self._cpu0 = 0.0
        self._cpu_last: float | None = None
        self._cpu_end: float | None = None
        self._t_last = 0.0
        self._cpu_max_pct: float | None = None
        self._rss_max: float | None = None

    # -- lifecycle ---------------------------------------------------------------

    def start(self) -> TelemetrySampler:
        if self._thread is not None:
            raise RuntimeError("TelemetrySampler is single-use: create a new one per run")
        self._open_sink()
        self._init_nvml()
        self._t0 = self._t_last = time.monotonic()
        self._cpu0 = _cpu_seconds()
        self._thread = threading.Thread(target=self._loop, name="hedgespec-telemetry", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop sampling, take a last sample, read the energy counters. Never raises."""
        if self._thread is None or self._duration is not None:
            return
        self._stop_event.set()
        # A hung driver call must not hang the benchmark's exit: give up waiting.
        self._thread.join(timeout=self.stop_timeout_s)
        hung = self._thread.is_alive()
        if hung:
            self._record_error(TimeoutError("the sampler thread did not stop (NVML call hung?)"))
            self._failed = True
            self._nvml = None  # do not shut NVML down under a thread still inside it
        if not self._failed:
            self._tick()  # the final state, so that even a short run has two samples
        with self._lock:
            self._duration = time.monotonic() - self._t0
            self._cpu_end = _cpu_seconds()
        for gpu in self._gpus if not hung else ():  # a hung NVML would hang the energy read too
            if gpu.energy_start is not None:
                try:
                    gpu.energy_end = int(gpu.energy_mj())
                except Exception as err:  # see _tick: telemetry never fails the run
                    self._record_error(err)
        if self._nvml is not None:
            try:
                self._nvml.nvmlShutdown()
            except Exception:  # a failed shutdown changes no measurement
                pass
        if self._file is not None:
            try:
                self._file.flush()
                os.fsync(self._file.fileno())
                self._file.close()
            except OSError as err:
                self._record_error(err)

    def __enter__(self) -> TelemetrySampler:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- setup ---------------------------------------------------------------------

    def _open_sink(self) -> None:
        sink = self._sink_arg
        if isinstance(sink, (str, Path)):
            try:
                self._file = file = open(sink, "a", encoding="utf-8")
            except OSError as err:  # summarise without a sample file rather than fail the run
                self._record_error(err)
                return

            def write(rec: Record) -> None:
                file.write(dumps_json(rec) + "\n")
                file.flush()  # a killed run keeps its samples; fsync once at stop

            self._sink = write
        else:
            self._sink = sink

    def _init_nvml(self) -> None:
        nvml = self._nvml_arg
        if nvml is None:
            try:
                import pynvml as nvml
            except ImportError:
                self.gpu_reason = "nvidia-ml-py (pynvml) is not installed"
                return
        error = getattr(nvml, "NVMLError", OSError)
        # Anything NVML raises here means "no GPU telemetry", never a failed run:
        # besides NVMLError, broken installs raise OSError or AttributeError.
        try:
            nvml.nvmlInit()
        except Exception as err:
            self.gpu_reason = f"NVML could not start ({_describe(err)})"
            return
        try:
            count = int(nvml.nvmlDeviceGetCount())
            indices = list(self._devices_arg) if self._devices_arg is not None else visible_indices(nvml, count)
            if self._uuids_arg:
                mine = [i for i in range(count)
                        if as_text(nvml.nvmlDeviceGetUUID(nvml.nvmlDeviceGetHandleByIndex(i))) in self._uuids_arg]
                indices = mine or indices
            gpus = [GpuReader(nvml, i, error) for i in indices]
        except Exception as err:
            self.gpu_reason = f"NVML could not list the GPUs ({_describe(err)})"
            gpus = []
        if not gpus:
            self.gpu_reason = self.gpu_reason or "NVML found no visible GPU"
            try:
                nvml.nvmlShutdown()
            except Exception:
                pass
            return
        self._nvml, self._gpus = nvml, gpus

    # -- sampling --------------------------------------------------------------------

    def _loop(self) -> None:
        next_t = self._t0
        while self._tick():
            next_t += self.interval_s
            delay = next_t - time.monotonic()
            if delay < 0:  # fell behind (a stalled interpreter): skip the missed ticks
                next_t, delay = time.monotonic(), 0.0
            if self._stop_event.wait(delay):
                return

    def _tick(self) -> bool:
        """Take one sample of every source; False (and sampling ends) on an error."""
        # Catch everything: NVML can fail mid-run (GPU lost, driver reset), the
        # sink can hit a full disk. A telemetry thread that dies loudly or takes
        # the benchmark with it is worse than one that stops and says why.
        try:
            now = time.monotonic()
            t = round(now - self._t0, 4)
            # NVML calls outside the lock: a hung driver call must not block summary() or stop().
            readings = [gpu.read(t) for gpu in self._gpus]
            with self._lock:  # summary() may read the statistics meanwhile
                records = [gpu.add(rec) for gpu, rec in zip(self._gpus, readings)]
                records.append(self._cpu_sample(now, t))
                self._ticks += 1
            if self._sink is not None:
                for rec in records:
                    self._sink(rec)
        except Exception as err:
            self._record_error(err)
            self._failed = True
        return not self._failed

    def _cpu_sample(self, now: float, t: float) -> Record:
        cpu = _cpu_seconds()
        pct = None  # the first sample has no window to measure over
        if self._cpu_last is not None and now > self._t_last:
            pct = 100.0 * (cpu - self._cpu_last) / (now - self._t_last)
            self._cpu_max_pct = max(self._cpu_max_pct or 0.0, pct)
        self._cpu_last, self._t_last = cpu, now
        rss = _rss_mib()
        if rss is not None:
            self._rss_max = max(self._rss_max or 0.0, rss)
        return {"t": t, "kind": "cpu", "cpu_pct": pct, "rss_mib": rss}

    def _record_error(self, err: BaseException) -> None:
        with self._lock:
            self.errors.append(_describe(err))

    def energy_mj(self) -> int | None:
        """The sampled GPUs' total-energy counters summed now, mJ; None without a counter on every GPU.

        For energy per query, read before and after it. The counter advances in driver
        steps (tens of ms), so a short query's difference is coarse; the error averages
        out over many queries. Never raises (telemetry never fails a run).
        """
        if not self._gpus or self._duration is not None or any(g.energy_start is None for g in self._gpus):
            return None
        try:
            return sum(int(g.energy_mj()) for g in self._gpus)
        except Exception as err:  # see _tick
            self._record_error(err)
            return None

    # -- results -----------------------------------------------------------------------

    def summary(self) -> Record:
        """JSON-ready summary: per-GPU block(s) or the CPU fallback, and any errors."""
        with self._lock:
            if self._thread is None:
                duration = 0.0
            elif self._duration is not None:
                duration = self._duration
            else:
                duration = time.monotonic() - self._t0
            cpu_now = self._cpu_end if self._cpu_end is not None else self._cpu_last
            cpu_used = None if cpu_now is None else cpu_now - self._cpu0
            devices = [gpu.summary() for gpu in self._gpus]
            return {
                "gpu_available": bool(self._gpus),
                "reason": None if self._gpus else self.gpu_reason,
                "interval_s": self.interval_s,
                "duration_s": duration,
                "samples": self._ticks,
                "devices": devices,
                "throttled": any(d["throttled"] for d in devices),
                "energy_j": _total([d["energy_j"] for d in devices]),
                "cpu": {
                    # Percent of one core: 200 means two cores busy for the whole run.
                    "cpu_mean_pct": 100.0 * cpu_used / duration if cpu_used is not None and duration else None,
                    "cpu_max_pct": self._cpu_max_pct,
                    "cpu_count": os.cpu_count(),
                    "rss_max_mib": self._rss_max,
                    "peak_rss_mib": peak_rss_mib(),  # whole process lifetime, not only the run
                },
                "stopped_early": self._failed,
                "errors": list(self.errors),
            }


def _total(values: list[float | None]) -> float | None:
    """Sum over devices, or None when any device's value is unknown (or no device)."""
    return sum(v for v in values if v is not None) if values and None not in values else None


def _describe(err: BaseException) -> str:
    text = str(err)
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def unavailable_message(summary: Record) -> str | None:
    """The line a report prints when a run had no GPU telemetry."""
    if summary.get("gpu_available"):
        return None
    return f"GPU telemetry unavailable: {summary.get('reason') or 'unknown reason'}"
