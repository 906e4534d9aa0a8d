"""The manifest's `hardware` section: CPU, memory, OS, and GPUs through NVML.

The only user of pynvml (nvidia-ml-py), imported lazily. It runs in a background thread while
the child runs, so it is thread-safe, fast when there is no GPU driver, and never raises or
prints: a machine without NVML simply has `gpus: []`. It must not import torch (design §5) nor
initialise CUDA; the torch/CUDA/cuDNN build comes from the hook's probe instead.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Mapping, Sequence
from typing import Any

THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
_NVML_LOCK = threading.Lock()  # NVML is thread-safe; this keeps init/shutdown pairs simple


def collect(env: Mapping[str, str]) -> dict[str, Any]:
    """The `hardware` mapping for a child started with environment `env`.

    Keys: cpu {model, logical_cores, physical_cores, usable_cores}, memory_bytes, os {system,
    release, version, machine}, threads (the thread variables set in `env`),
    cuda_visible_devices (as given, or null), gpus (see `_gpus`), nvml_error (why NVML gave
    nothing, or null).
    """
    uname = os.uname()
    cpuinfo = _read("/proc/cpuinfo")
    gpus, nvml_error = _gpus(env.get("CUDA_VISIBLE_DEVICES"))
    return {
        "cpu": {
            "model": _cpu_model(cpuinfo) or uname.machine,
            "logical_cores": os.cpu_count(),
            "physical_cores": _physical_cores(cpuinfo),
            "usable_cores": _usable_cores(),
        },
        "memory_bytes": _memory_bytes(),
        "os": {"system": uname.sysname, "release": uname.release, "version": uname.version,
               "machine": uname.machine},
        "threads": {key: env[key] for key in THREAD_VARS if key in env},
        "cuda_visible_devices": env.get("CUDA_VISIBLE_DEVICES"),
        "gpus": gpus,
        "nvml_error": nvml_error,
    }


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def _cpu_model(cpuinfo: str) -> str | None:
    # x86 has "model name"; arm64 kernels often give only "Hardware" or "Model".
    for key in ("model name", "Hardware", "Model", "cpu model"):
        for line in cpuinfo.splitlines():
            name, sep, value = line.partition(":")
            if sep and name.strip() == key and value.strip():
                return value.strip()
    return None


def _physical_cores(cpuinfo: str) -> int | None:
    """Distinct (package, core) pairs: from /proc/cpuinfo, else sysfs topology, else None."""
    cores: set[tuple[str, str]] = set()
    package = core = None
    for line in [*cpuinfo.splitlines(), ""]:
        name, _, value = line.partition(":")
        name = name.strip()
        if name == "physical id":
            package = value.strip()
        elif name == "core id":
            core = value.strip()
        elif not line.strip():  # end of one processor's block
            if package is not None and core is not None:
                cores.add((package, core))
            package = core = None
    if cores:
        return len(cores)
    base = "/sys/devices/system/cpu"
    try:
        cpus = [d for d in os.listdir(base) if d.startswith("cpu") and d[3:].isdigit()]
    except OSError:
        return None
    for cpu in cpus:
        topology = os.path.join(base, cpu, "topology")
        pair = (_read(os.path.join(topology, "physical_package_id")).strip(),
                _read(os.path.join(topology, "core_id")).strip())
        if all(pair):
            cores.add(pair)
    return len(cores) or None


def _usable_cores() -> int | None:
    try:
        return len(os.sched_getaffinity(0))  # a cpuset or taskset narrows this
    except (AttributeError, OSError):
        return os.cpu_count()


def _memory_bytes() -> int | None:
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            parts = line.split()
            if len(parts) >= 2 and parts[1].isdigit():
                return int(parts[1]) * (1024 if parts[-1] == "kB" else 1)
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _driver_present() -> bool:
    """Cheap check before importing pynvml (~35 ms of CPU) on a machine that cannot use it."""
    return ("pynvml" in sys.modules or os.path.exists("/proc/driver/nvidia/version")
            or os.path.exists("/dev/nvidiactl"))


def _gpus(visible: str | None) -> tuple[list[dict[str, Any]], str | None]:
    """Every GPU NVML sees, with which of them the child can use.

    Each: index (NVML's, PCI bus order), name, uuid, memory_bytes, driver, cuda_driver,
    compute_capability, pci_bus_id, visible, cuda_index (the device number the child's CUDA
    gives it, from CUDA_VISIBLE_DEVICES; null when hidden). cuda_index assumes CUDA orders
    devices as NVML does: true with CUDA_DEVICE_ORDER=PCI_BUS_ID or identical GPUs.
    """
    if not _driver_present():
        return [], "no NVIDIA driver on this machine"
    try:
        import pynvml
    except Exception as e:  # nvidia-ml-py missing or broken: no GPU information
        return [], f"pynvml unavailable: {e}"
    with _NVML_LOCK:
        try:
            pynvml.nvmlInit()  # fails fast without the library or the driver
        except Exception as e:
            return [], _nvml_message(e)
        try:
            return _devices(pynvml, visible), None
        except Exception as e:
            return [], _nvml_message(e)
        finally:
            _attempt(pynvml.nvmlShutdown)  # a failed shutdown changes nothing for the run


def _nvml_message(error: Exception) -> str:
    return f"NVML: {error}" if str(error) else f"NVML: {type(error).__name__}"


def _devices(nvml: Any, visible: str | None) -> list[dict[str, Any]]:
    driver = _attempt(lambda: _text(nvml.nvmlSystemGetDriverVersion()))
    cuda_driver = _attempt(lambda: _cuda_version(nvml.nvmlSystemGetCudaDriverVersion()))
    gpus: list[dict[str, Any]] = []
    mig_owner: dict[str, int] = {}
    for index in range(nvml.nvmlDeviceGetCount()):
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
        capability = _attempt(lambda h=handle: nvml.nvmlDeviceGetCudaComputeCapability(h))
        pci = _attempt(lambda h=handle: nvml.nvmlDeviceGetPciInfo(h))
        gpus.append({
            "index": index,
            "name": _attempt(lambda h=handle: _text(nvml.nvmlDeviceGetName(h))),
            "uuid": _attempt(lambda h=handle: _text(nvml.nvmlDeviceGetUUID(h))),
            "memory_bytes": _attempt(lambda h=handle: int(nvml.nvmlDeviceGetMemoryInfo(h).total)),
            "driver": driver,
            "cuda_driver": cuda_driver,
            "compute_capability": (f"{capability[0]}.{capability[1]}"
                                   if capability is not None else None),
            "pci_bus_id": _text(getattr(pci, "busId", None)) if pci is not None else None,
        })
        for mig_uuid in _mig_uuids(nvml, handle):
            mig_owner[mig_uuid] = index
    order = visible_order(visible, [g["uuid"] for g in gpus], mig_owner)
    for gpu in gpus:
        position = order.index(gpu["index"]) if gpu["index"] in order else None
        gpu["visible"] = position is not None
        gpu["cuda_index"] = position
    return gpus


def _mig_uuids(nvml: Any, handle: Any) -> list[str]:
    """UUIDs of the MIG instances of a GPU in MIG mode (none otherwise, or on any failure)."""
    try:
        current, _pending = nvml.nvmlDeviceGetMigMode(handle)
        if not current:
            return []
        uuids = []
        for i in range(nvml.nvmlDeviceGetMaxMigDeviceCount(handle)):
            try:
                mig = nvml.nvmlDeviceGetMigDeviceHandleByIndex(handle, i)
            except Exception:
                continue  # an empty slot
            uuids.append(_text(nvml.nvmlDeviceGetUUID(mig)))
        return uuids
    except Exception:
        return []


def visible_order(value: str | None, uuids: Sequence[str | None],
                  mig_owner: Mapping[str, int] | None = None) -> list[int]:
    """NVML indices of the GPUs CUDA_VISIBLE_DEVICES=`value` exposes, in CUDA device order.

    As CUDA reads it: unset shows every GPU; entries are indices, `GPU-` UUIDs or unique
    prefixes of them, or `MIG-` UUIDs (counted as their GPU); the list ends at the first entry
    that matches nothing, is out of range or repeats one, so "" or "-1" hide every GPU.
    """
    if value is None:
        return list(range(len(uuids)))
    order: list[int] = []
    for token in value.split(","):
        token = token.strip()
        match: int | None = None
        if token.isdigit():
            match = int(token) if int(token) < len(uuids) else None
        elif token.upper().startswith("GPU-"):
            candidates = [i for i, uuid in enumerate(uuids)
                          if uuid is not None and uuid.lower().startswith(token.lower())]
            match = candidates[0] if len(candidates) == 1 else None
        elif token.upper().startswith("MIG-") and mig_owner:
            match = mig_owner.get(token)
        if match is None or match in order:
            break
        order.append(match)
    return order


def _attempt(read: Any) -> Any:
    """One NVML query: its value, or None when this GPU or driver does not support it."""
    try:
        return read()
    except Exception:
        return None


def _text(value: Any) -> Any:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _cuda_version(version: int) -> str:
    # NVML gives the CUDA driver API version as 1000 * major + 10 * minor (12040 -> "12.4").
    return f"{version // 1000}.{version % 1000 // 10}"
