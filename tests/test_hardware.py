"""capture.hardware: real CPU/OS facts, NVML absent for real, and a fake NVML for GPU mapping."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from repro.capture import hardware

UUIDS = [
    "GPU-aaaa1111-0000-0000-0000-000000000000",
    "GPU-bbbb2222-0000-0000-0000-000000000000",
    "GPU-aaab3333-0000-0000-0000-000000000000",
]
MIG_UUID = "MIG-cccc4444-0000-0000-0000-000000000000"


class NVMLError(Exception):
    pass


class FakeNVML:
    """Stands in for the pynvml module: three GPUs, the last one split into MIG instances.

    Stricter than NVML about threads: one nvmlShutdown ends every session (no reference
    count) and a query outside a session raises, so threads whose init..shutdown sessions
    overlap break each other, as with a library that is not thread-safe. `pause` widens each
    query so that overlapping sessions really interleave; `max_sessions` counts the most open
    at once.
    """

    NVMLError = NVMLError

    def __init__(self, *, fail_init: bool = False, broken_name: int | None = None,
                 pause: float = 0.0) -> None:
        self.fail_init = fail_init
        self.broken_name = broken_name
        self.pause = pause
        self.calls = {"init": 0, "shutdown": 0}
        self.lock = threading.Lock()
        self.initialized = False
        self.sessions = 0
        self.max_sessions = 0

    def _query(self) -> None:
        if self.pause:
            time.sleep(self.pause)
        if not self.initialized:
            raise NVMLError("Uninitialized")

    def nvmlInit(self) -> None:
        if self.fail_init:
            raise NVMLError("Driver Not Loaded")
        with self.lock:
            self.calls["init"] += 1
            self.initialized = True
            self.sessions += 1
            self.max_sessions = max(self.max_sessions, self.sessions)

    def nvmlShutdown(self) -> None:
        with self.lock:
            self.calls["shutdown"] += 1
            self.initialized = False
            self.sessions -= 1

    def nvmlSystemGetDriverVersion(self) -> bytes:
        self._query()
        return b"550.54.15"  # older nvidia-ml-py versions return bytes

    def nvmlSystemGetCudaDriverVersion(self) -> int:
        self._query()
        return 12040

    def nvmlDeviceGetCount(self) -> int:
        self._query()
        return 3

    def nvmlDeviceGetHandleByIndex(self, index: int) -> Any:
        self._query()
        return ("gpu", index)

    def nvmlDeviceGetName(self, handle: Any) -> str:
        self._query()
        if handle[1] == self.broken_name:
            raise NVMLError("Not Supported")
        names = ["NVIDIA H100 80GB HBM3", "NVIDIA H100 80GB HBM3", "NVIDIA A100-SXM4-40GB"]
        return names[int(handle[1])]

    def nvmlDeviceGetUUID(self, handle: Any) -> str:
        self._query()
        return MIG_UUID if handle[0] == "mig" else UUIDS[handle[1]]

    def nvmlDeviceGetMemoryInfo(self, handle: Any) -> Any:
        self._query()
        return SimpleNamespace(total=[85899345920, 85899345920, 42949672960][handle[1]])

    def nvmlDeviceGetCudaComputeCapability(self, handle: Any) -> tuple[int, int]:
        self._query()
        return (9, 0) if handle[1] < 2 else (8, 0)

    def nvmlDeviceGetPciInfo(self, handle: Any) -> Any:
        self._query()
        return SimpleNamespace(busId=f"00000000:{0x17 + handle[1]:02X}:00.0".encode())

    def nvmlDeviceGetMigMode(self, handle: Any) -> tuple[int, int]:
        self._query()
        return (1, 1) if handle[1] == 2 else (0, 0)

    def nvmlDeviceGetMaxMigDeviceCount(self, handle: Any) -> int:
        self._query()
        return 2

    def nvmlDeviceGetMigDeviceHandleByIndex(self, handle: Any, index: int) -> Any:
        self._query()
        if index == 1:
            raise NVMLError("Not Found")  # an empty MIG slot
        return ("mig", handle[1], index)


@pytest.fixture
def fake_nvml(monkeypatch: pytest.MonkeyPatch) -> FakeNVML:
    fake = FakeNVML()
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    return fake


def nvml_works() -> bool:
    if shutil.which("nvidia-smi") is None:
        return False
    try:
        done = subprocess.run(["nvidia-smi", "-L"], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0 and b"GPU" in done.stdout


def test_collect_reports_real_cpu_memory_and_os() -> None:
    info = hardware.collect({"OMP_NUM_THREADS": "2", "HOME": "/x"})
    cpu = info["cpu"]
    assert cpu["logical_cores"] == os.cpu_count()
    assert isinstance(cpu["physical_cores"], int)
    assert 1 <= cpu["physical_cores"] <= cpu["logical_cores"]
    assert cpu["usable_cores"] == len(os.sched_getaffinity(0))
    assert isinstance(cpu["model"], str) and cpu["model"]
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    models = [line for line in cpuinfo.splitlines() if line.startswith("model name")]
    if models:
        assert cpu["model"] == models[0].split(":", 1)[1].strip()
    pages = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    assert abs(info["memory_bytes"] - pages) <= pages * 0.05
    assert info["os"] == {"system": platform.system(), "release": platform.release(),
                          "version": platform.version(), "machine": platform.machine()}
    assert info["threads"] == {"OMP_NUM_THREADS": "2"}
    assert info["cuda_visible_devices"] is None


@pytest.mark.skipif(nvml_works(), reason="this machine has a working NVIDIA driver")
def test_collect_without_nvml_gives_no_gpus_quietly(capfd: pytest.CaptureFixture[str]) -> None:
    start = time.perf_counter()
    info = hardware.collect({"CUDA_VISIBLE_DEVICES": "0"})
    assert time.perf_counter() - start < 5  # the NVML failure path is quick
    assert info["gpus"] == []
    assert isinstance(info["nvml_error"], str) and info["nvml_error"]
    assert capfd.readouterr() == ("", "")


def test_collect_without_pynvml_module(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # `import pynvml` raises ImportError
    info = hardware.collect({})
    assert info["gpus"] == []
    assert info["nvml_error"].startswith("pynvml unavailable")


def test_collect_when_nvml_init_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", FakeNVML(fail_init=True))
    info = hardware.collect({})
    assert (info["gpus"], info["nvml_error"]) == ([], "NVML: Driver Not Loaded")


def test_collect_reads_gpus_through_nvml(fake_nvml: FakeNVML) -> None:
    info = hardware.collect({"CUDA_VISIBLE_DEVICES": "2,0"})
    assert info["nvml_error"] is None
    assert info["cuda_visible_devices"] == "2,0"
    assert info["gpus"] == [
        {"index": 0, "name": "NVIDIA H100 80GB HBM3", "uuid": UUIDS[0],
         "memory_bytes": 85899345920, "driver": "550.54.15", "cuda_driver": "12.4",
         "compute_capability": "9.0", "pci_bus_id": "00000000:17:00.0", "visible": True,
         "cuda_index": 1},
        {"index": 1, "name": "NVIDIA H100 80GB HBM3", "uuid": UUIDS[1],
         "memory_bytes": 85899345920, "driver": "550.54.15", "cuda_driver": "12.4",
         "compute_capability": "9.0", "pci_bus_id": "00000000:18:00.0", "visible": False,
         "cuda_index": None},
        {"index": 2, "name": "NVIDIA A100-SXM4-40GB", "uuid": UUIDS[2],
         "memory_bytes": 42949672960, "driver": "550.54.15", "cuda_driver": "12.4",
         "compute_capability": "8.0", "pci_bus_id": "00000000:19:00.0", "visible": True,
         "cuda_index": 0},
    ]
    assert fake_nvml.calls == {"init": 1, "shutdown": 1}


@pytest.mark.parametrize(
    ("visible", "cuda_indices"),
    [
        (None, [0, 1, 2]),  # unset: every GPU, in NVML order
        ("", [None, None, None]),
        ("-1", [None, None, None]),
        ("1", [None, 0, None]),
        ("2,0", [1, None, 0]),
        (" 1 , 2 ", [None, 0, 1]),
        ("1,7,0", [None, 0, None]),  # CUDA stops at the first invalid entry
        ("0,0,1", [0, None, None]),  # and at a repeated one
        ("GPU-bbbb2222-0000-0000-0000-000000000000", [None, 0, None]),
        ("gpu-bbbb2222", [None, 0, None]),  # a unique prefix, any case
        ("GPU-aaa,1", [None, None, None]),  # an ambiguous prefix matches nothing
        ("GPU-aaab,GPU-aaaa", [1, None, 0]),
        (f"{MIG_UUID}", [None, None, 0]),  # a MIG instance makes its GPU visible
        ("GPU-ffff", [None, None, None]),
    ],
)
def test_collect_maps_cuda_visible_devices(fake_nvml: FakeNVML, visible: str | None,
                                           cuda_indices: list[int | None]) -> None:
    env = {} if visible is None else {"CUDA_VISIBLE_DEVICES": visible}
    gpus = hardware.collect(env)["gpus"]
    assert [g["cuda_index"] for g in gpus] == cuda_indices
    assert [g["visible"] for g in gpus] == [i is not None for i in cuda_indices]


def test_collect_tolerates_one_failing_query(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", FakeNVML(broken_name=1))
    gpus = hardware.collect({})["gpus"]
    assert [g["name"] for g in gpus] == ["NVIDIA H100 80GB HBM3", None, "NVIDIA A100-SXM4-40GB"]
    assert gpus[1]["uuid"] == UUIDS[1]


def test_collect_is_thread_safe(monkeypatch: pytest.MonkeyPatch) -> None:
    # Eight threads enter collect 10 ms apart; each query pauses, so sessions that are not
    # serialised overlap for real, and one thread's shutdown breaks another's queries.
    fake = FakeNVML(pause=0.002)
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    alone = hardware.collect({"CUDA_VISIBLE_DEVICES": "1"})
    assert alone["nvml_error"] is None and all(g["name"] for g in alone["gpus"])
    results: list[dict[str, Any]] = []
    start = threading.Barrier(8)

    def work(index: int) -> None:
        start.wait(timeout=60)
        time.sleep(index * 0.01)
        results.append(hardware.collect({"CUDA_VISIBLE_DEVICES": "1"}))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(results) == 8
    assert all(r["gpus"] == alone["gpus"] and r["nvml_error"] is None for r in results)
    assert fake.calls == {"init": 9, "shutdown": 9}
    assert fake.max_sessions == 1


@pytest.mark.gpu
@pytest.mark.skipif(not nvml_works(), reason="needs an NVIDIA GPU and driver")
def test_collect_reads_real_gpus() -> None:
    query = subprocess.run(
        ["nvidia-smi", "--query-gpu=index,uuid,name,memory.total,driver_version",
         "--format=csv,noheader,nounits"],
        capture_output=True, text=True, timeout=60, check=True)
    rows = [[cell.strip() for cell in line.split(",")] for line in query.stdout.splitlines()]
    info = hardware.collect({})
    assert info["nvml_error"] is None
    gpus = info["gpus"]
    assert [(str(g["index"]), g["uuid"], g["name"]) for g in gpus] == [
        (row[0], row[1], row[2]) for row in rows]
    for gpu, row in zip(gpus, rows, strict=True):
        assert gpu["memory_bytes"] // 2**20 == int(row[3])  # nvidia-smi reports MiB
        assert gpu["driver"] == row[4]
        assert gpu["visible"] is True and gpu["cuda_index"] == gpu["index"]
        major, minor = gpu["compute_capability"].split(".")
        assert major.isdigit() and minor.isdigit()
        assert gpu["cuda_driver"].count(".") == 1
    first = gpus[0]["uuid"]
    only_first = hardware.collect({"CUDA_VISIBLE_DEVICES": first})["gpus"]
    assert only_first[0]["cuda_index"] == 0
    assert all(not g["visible"] for g in only_first[1:])
