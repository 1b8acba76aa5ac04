"""ONNX Runtime sessions and the runners that feed them, on the CPU or a CUDA GPU. No torch here.

Why it is built this way (figures in ``shared/PERFORMANCE.md`` and ``bench/README.md``):

* ``session.run()`` with numpy in and out leaves most of a GPU idle: every call allocates device
  memory and copies from pageable memory. :class:`CudaRunner` binds inputs and outputs to **pinned**
  host buffers it owns (``cudaHostAlloc``, allocated once, reused for every batch), so ORT's host→device
  copy is a DMA at full bus speed, and it runs several *lanes* from threads (ORT releases the GIL), so
  the copy of one batch overlaps the compute of another. Each lane is its own ORT session: concurrent
  IOBinding runs on one CUDA session were seen returning another batch's outputs.
* TF32 is off on CUDA: scores then match the CPU and torch's fp32 to ~1e-6 (TF32 moved logits ~1e-4).
* Asking ORT for ``CUDAExecutionProvider`` where it cannot load only warns and runs on the CPU. The
  provider that actually runs is read back from ``session.get_providers()`` and reported; ``--device
  cuda`` that ends up on the CPU is an error, ``auto`` falls back with a log line.
* On the CPU the model is the bottleneck: the cores go to ORT, shared out among two lanes whose idle
  threads do not spin, so the reader thread gets a core when it needs one; batches run in calls of
  :data:`CPU_CALL_ROWS` rows so ORT's arena stays small.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import queue
import sys
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from verticals.errors import UserError, VerticalsError
from verticals.ort import open_session, session_options

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

log = logging.getLogger("verticals.scoring")

__all__ = ["CpuRunner", "CudaRunner", "Runtime", "available_cores", "cuda_device_count", "fast_int8",
           "open_runtime", "resolve_device"]


def available_cores() -> int:
    """CPU cores this process may use (respects affinity masks and cgroup-limited containers)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


INT8_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8", "asimddp", "i8mm")
"""CPU features with which ONNX Runtime's int8 matrix kernels beat fp32 (VNNI on x86, dot product on
ARM). Without them x86 multiplies int8 with 16-bit intermediates (``VPMADDUBSW``), measured no faster
than fp32 (bench/README.md)."""


def fast_int8() -> str | None:
    """The CPU feature that makes int8 inference fast here (``avx512_vnni``, ...), or ``None``.

    ``$VERTICALS_FAST_INT8`` overrides the detection: ``1`` (yes) or ``0`` (no).
    """
    forced = os.environ.get("VERTICALS_FAST_INT8", "").strip()
    if forced in ("0", "1"):
        return "VERTICALS_FAST_INT8=1" if forced == "1" else None
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:  # pragma: no cover - not Linux
        return None
    flags: set[str] = set()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            flags.update(line.split(":", 1)[1].split())
            break
    return next((f for f in INT8_FLAGS if f in flags), None)


def cuda_device_count() -> int:
    """Visible CUDA devices, asked of the driver directly (no torch, no ORT warnings); 0 if none."""
    try:
        lib = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return 0
    count = ctypes.c_int(0)
    if lib.cuInit(0) != 0 or lib.cuDeviceGetCount(ctypes.byref(count)) != 0:
        return 0
    return count.value


def resolve_device(device: str) -> str:
    """What ``device`` should mean here: ``cuda`` if asked, or ``auto`` with a GPU and a CUDA-capable ORT."""
    import onnxruntime as ort

    if device not in ("auto", "cpu", "cuda"):
        raise UserError(f"unknown device {device!r}", hint="use cpu, cuda or auto")
    if device != "auto":
        return device
    if "CUDAExecutionProvider" in ort.get_available_providers() and cuda_device_count() > 0:
        return "cuda"
    return "cpu"


@dataclass
class Runtime:
    """An ORT session and what ran it: ``device`` is ``cpu`` or ``cuda``, ``provider`` what ORT chose."""

    session: Any
    device: str
    provider: str
    providers: list[str]
    threads: int
    runner: Any
    notes: list[str] = field(default_factory=list)

    def describe(self) -> dict[str, Any]:
        return {"device": self.device, "provider": self.provider, "providers": self.providers,
                "intra_op_threads": self.threads, "runner": self.runner.describe(), "notes": list(self.notes)}

    def close(self) -> None:
        self.runner.close()


def _preload_cuda_libraries() -> None:
    """Let ORT find CUDA/cuDNN from pip's ``nvidia-*`` packages (a no-op when torch already loaded them)."""
    import onnxruntime as ort

    if "torch" in sys.modules or not hasattr(ort, "preload_dlls"):
        return
    with contextlib.suppress(Exception):
        ort.preload_dlls(cuda=True, cudnn=True, msvc=False)


def open_runtime(model_path: Path, device: str, batch_size: int, *, threads: int | None = None,
                 output_names: Sequence[str] | None = None, input_dtypes: Mapping[str, str] | None = None,
                 spinning: bool | None = None, lanes: int | None = None) -> Runtime:
    """Open ``model_path`` on ``device`` (``auto``, ``cpu`` or ``cuda``) and build its runner.

    Args:
        threads: ORT intra-op threads; default ``$VERTICALS_SCORE_THREADS`` or all usable cores.
        output_names: graph outputs to compute (default: all).
        input_dtypes: numpy dtype name per input (from the manifest's signature).
        spinning: let idle ORT threads spin; default off on the CPU (a reader thread shares the cores).
        lanes: concurrent lanes (sessions), default ``$VERTICALS_SCORE_LANES``, else 2 on CUDA and
            ``min(2, threads)`` on the CPU, where the threads are shared out among the lanes.
    """
    import onnxruntime as ort

    if device not in ("auto", "cpu", "cuda"):
        raise UserError(f"unknown device {device!r}", hint="use cpu, cuda or auto")
    cores = available_cores()
    threads = threads or int(os.environ.get("VERTICALS_SCORE_THREADS", "0") or 0) or cores
    notes: list[str] = []
    want_cuda = device == "cuda"
    if want_cuda:  # ask before ORT tries: its failed provider load prints a C++ log line to stderr
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise UserError("--device cuda: this onnxruntime build has no CUDA execution provider",
                            hint="install onnxruntime-gpu (pip install -e 'core[cuda]') on a machine with an NVIDIA "
                                 "GPU, or use --device cpu")
        if cuda_device_count() == 0:
            raise UserError("--device cuda: no CUDA GPU is visible on this machine",
                            hint="use --device cpu (or auto), or check the NVIDIA driver and CUDA_VISIBLE_DEVICES")
    if device == "auto":
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            notes.append("auto: this onnxruntime build has no CUDA execution provider")
        elif cuda_device_count() == 0:
            notes.append("auto: no CUDA device visible")
        else:
            want_cuda = True
    if want_cuda:
        _preload_cuda_libraries()
        # ORT 1.31 warns on every CUDA session that no *plugin* EP device is registered (the built-in
        # CUDA EP still runs); the provider actually used is checked and reported below instead.
        ort.set_default_logger_severity(3)
        # TF32 off: scores match the CPU and torch's fp32 default (TF32 moves logits by ~1e-4).
        providers: list[Any] = [("CUDAExecutionProvider", {"device_id": 0, "arena_extend_strategy": "kSameAsRequested",
                                                           "use_tf32": 0}), "CPUExecutionProvider"]
        gpu_threads = min(threads, 4)

        def make() -> Any:
            return open_session(model_path, providers, session_options(
                threads=gpu_threads, spinning=True if spinning is None else spinning))

        sess = make()
        used = sess.get_providers()
        if used and used[0] == "CUDAExecutionProvider":
            n_lanes = lanes or int(os.environ.get("VERTICALS_SCORE_LANES", "0") or 0) or 2
            runner = CudaRunner(sess, batch_size, output_names, input_dtypes, lanes=n_lanes, make_session=make)
            log.info("scoring on CUDAExecutionProvider: %s", runner.describe())
            return Runtime(sess, "cuda", "CUDAExecutionProvider", used, gpu_threads, runner, notes)
        reason = "onnxruntime could not load the CUDA execution provider (CUDA 13/cuDNN 9 libraries missing?)"
        if device == "cuda":
            raise VerticalsError(f"--device cuda: {reason}; it would run on {used[0] if used else 'nothing'}",
                                 hint="install onnxruntime-gpu[cuda,cudnn] on a machine with an NVIDIA GPU, "
                                      "or use --device cpu")
        notes.append(f"auto: {reason}; running on the CPU")
        log.warning("%s; running on the CPU", reason)
    n_lanes = lanes or int(os.environ.get("VERTICALS_SCORE_LANES", "0") or 0) or min(2, threads)
    per_lane = max(1, threads // n_lanes)
    sessions = [open_session(model_path, ["CPUExecutionProvider"], session_options(threads=per_lane,
                                                                                   spinning=bool(spinning)))
                for _ in range(n_lanes)]
    runner = CpuRunner(sessions, output_names, input_dtypes)
    log.info("scoring on CPUExecutionProvider: %d lane(s) x %d intra-op thread(s)%s", n_lanes, per_lane,
             f" ({'; '.join(notes)})" if notes else "")
    sess = sessions[0]
    return Runtime(sess, "cpu", sess.get_providers()[0], sess.get_providers(), per_lane * n_lanes, runner, notes)


def as_input(array: np.ndarray, dtype: str | None) -> np.ndarray:
    """ORT is strict about dtypes (float64 → INVALID_ARGUMENT): cast to the signature, keep it contiguous."""
    import numpy as np

    if dtype is not None and array.dtype != np.dtype(dtype):
        array = array.astype(dtype)
    return np.ascontiguousarray(array)


class _Done:
    """A completed future, so the CPU runner and the GPU runner share one interface."""

    __slots__ = ("_value",)

    def __init__(self, value: Any) -> None:
        self._value = value

    def result(self) -> Any:
        return self._value

    def done(self) -> bool:
        return True


CPU_CALL_ROWS = 16384
"""Rows per ORT call on the CPU (a batch is cut into calls of this size; see CpuRunner._run)."""


class CpuRunner:
    """``session.run`` on the CPU provider, in ``len(sessions)`` lanes.

    One lane runs on the calling thread. Several lanes (each its own session with ``threads / lanes``
    intra-op threads) run concurrent batches from a small thread pool: on few cores this beats one
    session whose threads meet at a barrier after every operator, because a thread delayed by the reader
    (or by other processes) then holds back only its own batch (measured in ``bench/``).
    """

    def __init__(self, sessions: Sequence[Any], output_names: Sequence[str] | None,
                 input_dtypes: Mapping[str, str] | None) -> None:
        self.sessions = list(sessions)
        self.session = self.sessions[0]
        self.output_names = list(output_names or [o.name for o in self.session.get_outputs()])
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.input_dtypes = dict(input_dtypes or {})
        self.depth = len(self.sessions)
        # Sessions waiting for work; a caller blocks until one is free (flows call from several threads).
        self._free: queue.SimpleQueue[Any] = queue.SimpleQueue()
        for session in self.sessions:
            self._free.put(session)
        self._pool = ThreadPoolExecutor(max_workers=self.depth, thread_name_prefix="verticals-cpu") \
            if self.depth > 1 else None

    def _run(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        import numpy as np

        session = self._free.get()
        try:
            n = len(next(iter(feed.values()))) if feed else 0
            step = CPU_CALL_ROWS
            if n <= step:
                return dict(zip(self.output_names, session.run(self.output_names, feed), strict=True))
            # ORT keeps an arena as large as the biggest call's activations: smaller calls keep memory
            # down (a 65,536-row call of a 256-wide MLP holds ~0.4 GB) at no cost in speed.
            parts = [session.run(self.output_names, {k: v[i:i + step] for k, v in feed.items()})
                     for i in range(0, n, step)]
            return {name: np.concatenate([p[j] for p in parts]) for j, name in enumerate(self.output_names)}
        finally:
            self._free.put(session)

    def submit(self, inputs: Mapping[str, np.ndarray]) -> Any:
        feed = {name: as_input(inputs[name], self.input_dtypes.get(name)) for name in self.input_names}
        if self._pool is None:
            return _Done(self._run(feed))
        return self._pool.submit(self._run, feed)

    def describe(self) -> str:
        return "session.run on numpy" + (f", {self.depth} lanes" if self.depth > 1 else "")

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)


# -- CUDA ------------------------------------------------------------------------------------------------
_ORT_TO_NUMPY = {"tensor(float)": "float32", "tensor(double)": "float64", "tensor(float16)": "float16",
                 "tensor(int64)": "int64", "tensor(int32)": "int32", "tensor(bool)": "bool",
                 "tensor(uint8)": "uint8", "tensor(int8)": "int8"}


class PinnedAllocator:
    """Page-locked host memory from the CUDA runtime the ORT CUDA provider already loaded.

    ``cudaHostAlloc`` memory lets the GPU copy by DMA at the bus's full speed, about three times what
    pageable memory gets on an H100 host. Falls back to ordinary numpy memory (``pinned = False``) when
    no CUDA runtime library can be found, which only costs speed.
    """

    def __init__(self) -> None:
        self.lib = _cudart()
        self.pinned = self.lib is not None
        self._blocks: list[int] = []

    def empty(self, shape: tuple[int, ...], dtype: str) -> np.ndarray:
        import numpy as np

        dt = np.dtype(dtype)
        nbytes = max(1, int(np.prod(shape)) * dt.itemsize)
        if self.lib is None:
            return np.empty(shape, dtype=dt)
        ptr = ctypes.c_void_p()
        rc = self.lib.cudaHostAlloc(ctypes.byref(ptr), ctypes.c_size_t(nbytes), 0)
        if rc != 0 or not ptr.value:
            self.pinned = False
            return np.empty(shape, dtype=dt)
        self._blocks.append(ptr.value)
        raw = (ctypes.c_uint8 * nbytes).from_address(ptr.value)
        return np.frombuffer(raw, dtype=np.uint8, count=nbytes)[: int(np.prod(shape)) * dt.itemsize] \
            .view(dt).reshape(shape)

    def close(self) -> None:
        if self.lib is not None:
            for ptr in self._blocks:
                self.lib.cudaFreeHost(ctypes.c_void_p(ptr))
        self._blocks.clear()


def _cudart() -> Any:
    """The CUDA runtime library (``libcudart.so.13``/``.12``), from the process or pip's nvidia packages."""
    names = ["libcudart.so.13", "libcudart.so.12", "libcudart.so"]
    for name in names:
        with contextlib.suppress(OSError):
            return _typed(ctypes.CDLL(name))
    import site

    roots = [*site.getsitepackages(), site.getusersitepackages(), *sys.path]
    for root in roots:
        for sub in ("nvidia/cu13/lib", "nvidia/cuda_runtime/lib"):
            folder = Path(root) / sub
            for name in names:
                if (folder / name).exists():
                    with contextlib.suppress(OSError):
                        return _typed(ctypes.CDLL(str(folder / name)))
    return None


def _typed(lib: Any) -> Any:
    lib.cudaHostAlloc.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_size_t, ctypes.c_uint]
    lib.cudaHostAlloc.restype = ctypes.c_int
    lib.cudaFreeHost.argtypes = [ctypes.c_void_p]
    lib.cudaFreeHost.restype = ctypes.c_int
    return lib


class _Lane:
    """One ORT session with its own IOBinding and buffers, reused batch after batch.

    A batch goes host array → this lane's pinned buffer → (DMA) a device ``OrtValue`` bound as the
    input; outputs land in bound device ``OrtValue`` s and are copied back once the run has finished.
    Device values are kept per batch shape (a partition's last batch is usually shorter), a few at most.

    Two traps this avoids, both seen on an H100 with ORT 1.31: binding *host* memory as an input makes
    ORT copy it to the device at bind time, so refilling the bound buffer without rebinding scored the
    old rows again; and binding outputs to host memory let a run return before the copy back had
    landed. Each lane has its own session (its own CUDA stream and arena).
    """

    MAX_SHAPES = 4

    def __init__(self, runner: CudaRunner, session: Any) -> None:
        self.runner = runner
        self.session = session
        self.binding = session.io_binding()
        self.device = "cuda" if session.get_providers()[0] == "CUDAExecutionProvider" else "cpu"
        self.host = {n: runner.alloc.empty((runner.capacity, *shape), dtype)
                     for n, (dtype, shape) in runner.in_specs.items()}
        self.values: OrderedDict[int, tuple[dict[str, Any], dict[str, Any]]] = OrderedDict()
        self.bound_rows = -1

    def _values(self, n: int) -> tuple[dict[str, Any], dict[str, Any]]:
        """Device inputs and (static) outputs for batches of ``n`` rows, made on first use."""
        import numpy as np
        import onnxruntime as ort

        if n in self.values:
            self.values.move_to_end(n)
            return self.values[n]
        r = self.runner

        def make(dtype: str, shape: tuple[int, ...]) -> Any:
            return ort.OrtValue.ortvalue_from_shape_and_type((n, *shape), np.dtype(dtype).type, self.device, 0)

        made = ({k: make(d, s) for k, (d, s) in r.in_specs.items()},
                {k: make(d, s) for k, (d, s) in r.out_specs.items() if s is not None})
        self.values[n] = made
        while len(self.values) > self.MAX_SHAPES:
            evicted, _ = self.values.popitem(last=False)
            if evicted == self.bound_rows:
                self.bound_rows = -1
        return made

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        import numpy as np

        r = self.runner
        n = len(next(iter(inputs.values())))
        dev_in, dev_out = self._values(n)
        for name, buf in self.host.items():
            staged = buf[:n]
            np.copyto(staged, inputs[name], casting="same_kind")
            dev_in[name].update_inplace(staged)  # pinned host → device
        if n != self.bound_rows:
            self.binding.clear_binding_inputs()
            self.binding.clear_binding_outputs()
            for name, value in dev_in.items():
                self.binding.bind_ortvalue_input(name, value)
            for name in r.output_names:
                if name in dev_out:
                    self.binding.bind_ortvalue_output(name, dev_out[name])
                else:  # shape known only after the run: ORT allocates on the device
                    self.binding.bind_output(name, self.device)
            self.bound_rows = n
        self.binding.synchronize_inputs()  # the copies above have landed
        self.session.run_with_iobinding(self.binding)
        self.binding.synchronize_outputs()  # the run's stream is done: outputs final, buffers free
        return dict(zip(r.output_names, self.binding.copy_outputs_to_cpu(), strict=True))


class CudaRunner:
    """Batches through the CUDA EP with IOBinding, pinned reused buffers and ``lanes`` concurrent runs.

    ``make_session`` opens one more session of the same model for each lane after the first (without it,
    lanes share ``session``, which is only safe for providers that run synchronously, like the CPU's).

    ``submit`` returns a future; at most ``depth`` batches are in flight, and each lane's buffers are
    reused for every batch it runs, so nothing is allocated per batch on the device or the host.
    """

    def __init__(self, session: Any, batch_size: int, output_names: Sequence[str] | None,
                 input_dtypes: Mapping[str, str] | None, *, lanes: int = 2,
                 make_session: Any = None) -> None:
        self.session = session
        self.capacity = batch_size
        self.output_names = list(output_names or [o.name for o in session.get_outputs()])
        self.input_names = [i.name for i in session.get_inputs()]
        self.input_dtypes = dict(input_dtypes or {})
        self.in_specs: dict[str, tuple[str, tuple[int, ...]]] = {}
        for arg in session.get_inputs():
            dtype = (input_dtypes or {}).get(arg.name) or _ORT_TO_NUMPY.get(arg.type, "float32")
            rest = tuple(arg.shape[1:])
            if not all(isinstance(d, int) and d > 0 for d in rest):
                raise VerticalsError(f"model input {arg.name!r} has shape {arg.shape}: only the batch axis "
                                     "may be dynamic for the CUDA runner", hint="use --device cpu")
            self.in_specs[arg.name] = (dtype, rest)
        self.out_specs: dict[str, tuple[str, tuple[int, ...] | None]] = {}
        for arg in session.get_outputs():
            rest = tuple(arg.shape[1:])
            static = all(isinstance(d, int) and d > 0 for d in rest)
            self.out_specs[arg.name] = (_ORT_TO_NUMPY.get(arg.type, "float32"), rest if static else None)
        self.alloc = PinnedAllocator()
        sessions = [session] + [make_session() if make_session else session for _ in range(max(1, lanes) - 1)]
        self.lanes = [_Lane(self, sess) for sess in sessions]
        self._free: queue.SimpleQueue[_Lane] = queue.SimpleQueue()
        for lane in self.lanes:
            self._free.put(lane)
        self._pool = ThreadPoolExecutor(max_workers=len(self.lanes), thread_name_prefix="verticals-gpu")
        self.depth = len(self.lanes)

    def _run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        lane = self._free.get()
        try:
            return lane.run(inputs)
        finally:
            self._free.put(lane)

    def submit(self, inputs: Mapping[str, np.ndarray]) -> Future:
        n = len(next(iter(inputs.values())))
        if n > self.capacity:
            raise VerticalsError(f"batch of {n} rows exceeds the runner's capacity {self.capacity}",
                                 hint="split the batch")
        return self._pool.submit(self._run, inputs)

    def describe(self) -> str:
        memory = "pinned" if self.alloc.pinned else "pageable (no CUDA runtime library found)"
        return f"IOBinding, {len(self.lanes)} lanes, {memory} host buffers of {self.capacity} rows"

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self.lanes.clear()
        self.alloc.close()
