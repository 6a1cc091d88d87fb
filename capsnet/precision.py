"""Which compute precision a run uses. `auto`, the default everywhere, asks the hardware.

`mixed_bfloat16` halves the convolutions' memory traffic, and is much faster where the device computes bfloat16
natively: an NVIDIA GPU of compute capability 8.0 or more (Ampere on), an x86 CPU with AVX512_BF16 or AMX-BF16, an
arm64 CPU with the BF16 extension. Anywhere else every bfloat16 operation is emulated, and training runs several
times slower than in float32 (README, "Precision"). So `auto` picks mixed_bfloat16 only on such hardware, float32
otherwise, and says why. An explicit precision is always obeyed.

The decision is a plain function of what the platform reports (`decide`), so it is tested on real flag sets of both
kinds; `resolve` gathers those reports for this process once.
"""

from __future__ import annotations

import functools
import platform
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from capsnet.config import AUTO_PRECISION as AUTO
from capsnet.config import PRECISION_CHOICES as CHOICES  # what --precision, TrainConfig and the Train page accept
from capsnet.config import PRECISIONS

X86_BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # /proc/cpuinfo names
ARM_BF16_FLAGS = ("bf16",)  # /proc/cpuinfo "Features" on Linux; FEAT_BF16 on macOS
FIRST_BF16_GPU = (8, 0)  # compute capability of the first NVIDIA GPUs with bfloat16 tensor cores (A100)


@dataclass(frozen=True)
class Precision:
    """A precision and how it was arrived at."""

    requested: str  # "auto" or an explicit precision
    precision: str  # what the network computes in: one of PRECISIONS
    reason: str  # why, in words a user reads

    def describe(self) -> str:
        """'auto → float32: this CPU has no native bfloat16', or 'float32 (chosen explicitly)'."""
        if self.requested == AUTO:
            return f"auto → {self.precision}: {self.reason}"
        return f"{self.precision} ({self.reason})"

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass(frozen=True)
class Hardware:
    """What the platform reports that matters here."""

    machine: str  # platform.machine(): x86_64, AMD64, arm64, aarch64, ...
    cpu_flags: frozenset[str]  # lowercase feature names
    gpu_capabilities: tuple[tuple[int, int], ...] = ()  # one (major, minor) per GPU the backend computes on


def cpu_has_native_bf16(machine: str, flags: frozenset[str] | set[str]) -> bool:
    machine = machine.lower()
    if machine in ("x86_64", "amd64", "i386", "i686", "x86"):
        return any(flag in flags for flag in X86_BF16_FLAGS)
    if machine in ("arm64", "aarch64", "armv8", "armv9"):
        return any(flag in flags for flag in ARM_BF16_FLAGS)
    return False


def decide(requested: str, hardware: Hardware) -> Precision:
    """The precision for `requested` ("auto" or one of PRECISIONS) on `hardware`."""
    if requested not in CHOICES:
        raise ValueError(f"unknown precision {requested!r}; use one of {', '.join(CHOICES)}")
    if requested != AUTO:
        return Precision(requested, requested, "chosen explicitly")
    if hardware.gpu_capabilities:  # training runs on the GPUs: they decide, all of them
        oldest = min(hardware.gpu_capabilities)
        version = f"{oldest[0]}.{oldest[1]}"
        if oldest >= FIRST_BF16_GPU:
            return Precision(AUTO, "mixed_bfloat16", f"the GPU computes bfloat16 natively (compute capability "
                                                     f"{version})")
        return Precision(AUTO, "float32", f"the GPU has no native bfloat16 (compute capability {version} < 8.0)")
    if cpu_has_native_bf16(hardware.machine, hardware.cpu_flags):
        found = sorted(hardware.cpu_flags & {*X86_BF16_FLAGS, *ARM_BF16_FLAGS})
        return Precision(AUTO, "mixed_bfloat16", f"this CPU computes bfloat16 natively ({', '.join(found)})")
    return Precision(AUTO, "float32", "this CPU has no native bfloat16")


def read_cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """The CPU's feature names: Linux's /proc/cpuinfo ("flags" on x86, "Features" on arm), macOS's sysctl."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            return frozenset(value.lower().split())
    if platform.system() == "Darwin":
        return _macos_flags()
    return frozenset()


def _macos_flags() -> frozenset[str]:
    flags = set()
    try:
        if subprocess.run(["sysctl", "-n", "hw.optional.arm.FEAT_BF16"], capture_output=True, text=True,
                          timeout=5).stdout.strip() == "1":
            flags.add("bf16")
        features = subprocess.run(["sysctl", "-n", "machdep.cpu.features", "machdep.cpu.leaf7_features"],
                                  capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.TimeoutExpired):
        return frozenset(flags)
    flags.update(word.lower().replace(".", "_") for word in features.split())
    return frozenset(flags)


def this_hardware() -> Hardware:
    """What this process computes on: the CPU, and the GPUs of the active Keras backend (imports it)."""
    from capsnet.backend import gpu_capabilities

    return Hardware(platform.machine(), read_cpu_flags(), tuple(gpu_capabilities()))


@functools.cache
def resolve(requested: str = AUTO) -> Precision:
    """The precision for `requested` on this machine, decided once per process."""
    if requested != AUTO:
        return decide(requested, Hardware("", frozenset()))
    return decide(AUTO, this_hardware())


def auto_for(on_gpu: bool) -> Precision:
    """What `auto` picks for a run on a GPU of this machine, or on its CPU alone (a CPU run sees no GPU)."""
    hardware = this_hardware()
    if not on_gpu:
        hardware = Hardware(hardware.machine, hardware.cpu_flags)
    return decide(AUTO, hardware)


@contextmanager
def dtype_policy(precision: str) -> Iterator[None]:
    """Layers created inside compute in `precision` ("float32", "mixed_bfloat16"); the global policy is restored
    afterwards, so building a network never changes how unrelated code builds its own."""
    import keras  # here, not at the top: the CLI reads CHOICES before Keras may be imported

    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}"
                         + (" (resolve 'auto' first: capsnet.precision.resolve)" if precision == AUTO else ""))
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(precision)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def jax_cpu_note(precision: str, backend_name: str | None = None, gpus: list[str] | None = None) -> str | None:
    """The note for a run about to start in bfloat16 on Keras' JAX backend without a GPU, or None elsewhere.

    In float32, JAX on a CPU trains as fast as TensorFlow since the primary capsules' convolution runs as a matrix
    product there (`capsnet.layers.convolve_as_matmul`); in bfloat16 XLA's CPU code trained at less than half
    float32's rate (README, "JAX on a CPU"). `precision` is the run's (`auto` is resolved as for a CPU run);
    `backend_name` and `gpus` default to the active backend's. Shared by the CLI (on stderr) and the Train page.
    """
    from capsnet import backend

    backend_name = backend_name or backend.name()
    if backend_name != "jax" or (gpus if gpus is not None else backend.accelerators()):
        return None
    if precision == AUTO:
        precision = auto_for(on_gpu=False).precision
    if precision != "mixed_bfloat16":
        return None
    return ("note: Keras on JAX without a GPU: XLA's CPU code trained mixed_bfloat16 at less than half float32's "
            "rate; --precision float32 trains faster here (README, \"JAX on a CPU\")")
