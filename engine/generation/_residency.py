"""Which models are loaded: as many as fit a memory budget of the device, the least
recently used one evicted when the next does not fit.

A workstation GPU holds one 7B model at a time, and a run may compare several. Each
distinct set of weights (:attr:`~engine.generation.Candidate.weights`: prompt styles and
adapters on one base share it) is loaded when a sample needs it; if it does not fit
beside the models already loaded, the one used longest ago is closed first
(:meth:`~engine.generation.backends.Backend.close` returns its memory to the device).
Every load and eviction is timed and reported in one line.

The budget is ``--device-memory`` (``"20GiB"``, which works on the CPU too), or, by
default (``"auto"``), the free memory of the CUDA device when the run starts; on the CPU
``"auto"`` sets no limit. A model's size is what its weights take once loaded
(:func:`weights_bytes`, read from the checkpoint's tensor headers before loading; the
loaded model's own count after), so a model that cannot fit even alone is refused in one
line before the run starts (:func:`check_fits`).
"""

from __future__ import annotations

import json
import re
import struct
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from pathlib import Path

from engine._faults import crash_point
from engine.errors import ConfigError
from engine.generation._models import resolve_device
from engine.generation.backends import Backend

#: Bytes per parameter of each precision a model is loaded in.
BYTES_PER_PARAMETER = {"float32": 4.0, "bfloat16": 2.0, "float16": 2.0, "int8": 1.0,
                       "nf4": 0.5}  # fmt: skip
_UNITS = {"": 1, "b": 1, "k": 1e3, "kb": 1e3, "m": 1e6, "mb": 1e6, "g": 1e9, "gb": 1e9,
          "t": 1e12, "tb": 1e12, "kib": 2**10, "mib": 2**20, "gib": 2**30,
          "tib": 2**40}  # fmt: skip
_SAFETENSORS_ITEM = {"F64": 8, "F32": 4, "BF16": 2, "F16": 2, "I64": 8, "I32": 4, "I16": 2,
                     "I8": 1, "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}  # fmt: skip


def parse_memory(text: str) -> int | None:
    """Bytes of a memory size written as a user would (``"20GiB"``, ``"512 MB"``,
    ``"1.5g"``); ``"auto"`` is ``None``.

    >>> parse_memory("20GiB"), parse_memory("512 MB"), parse_memory("auto")
    (21474836480, 512000000, None)
    """
    text = str(text).strip().lower()
    if text == "auto":
        return None
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([a-z]*)", text)
    if not match or match[2] not in _UNITS:
        raise ConfigError(f"device memory {text!r} is not a size such as 20GiB, 512MB or auto")
    size = int(float(match[1]) * _UNITS[match[2]])
    if size <= 0:
        raise ConfigError(f"device memory must be more than 0 bytes, got {text!r}")
    return size


def device_budget(text: str, device: str) -> int | None:
    """The budget ``--device-memory`` ``text`` sets on ``device``: its size, or for
    ``"auto"`` the free memory of a CUDA device now (``None``, no limit, on the CPU)."""
    size = parse_memory(text)
    if size is not None:
        return size
    resolved = resolve_device(device)
    if not resolved.startswith("cuda"):
        return None
    import torch

    free, _total = torch.cuda.mem_get_info(torch.device(resolved))
    return int(free)


def format_memory(size: float) -> str:
    """``size`` bytes in the largest binary unit that keeps it at 1 or more.

    >>> format_memory(15 * 2**30), format_memory(300 * 2**10), format_memory(12)
    ('15.0 GiB', '300.0 KiB', '12 B')
    """
    for unit, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{int(size)} B"


def weights_bytes(folder: Path, precision: str) -> int:
    """What the weights in model ``folder`` take once loaded in ``precision`` (a key of
    :data:`BYTES_PER_PARAMETER`): their parameters, counted from the ``.safetensors``
    headers without reading a tensor, times the bytes per parameter. A checkpoint kept
    as ``.bin`` files is counted from their size and its stored precision
    (``torch_dtype`` of ``config.json``, float32 if it names none)."""
    per_parameter = BYTES_PER_PARAMETER[precision]
    tensors = sorted(Path(folder).glob("*.safetensors"))
    if tensors:
        return int(sum(_safetensors_parameters(path) for path in tensors) * per_parameter)
    stored = _stored_precision(Path(folder))
    pickled = sum(path.stat().st_size for path in Path(folder).glob("*.bin"))
    return int(pickled / BYTES_PER_PARAMETER.get(stored, 4.0) * per_parameter)


def _safetensors_parameters(path: Path) -> int:
    """The number of parameters in one ``.safetensors`` file, from its JSON header."""
    with path.open("rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        header = json.loads(handle.read(length))
    count = 0
    for name, tensor in header.items():
        if name == "__metadata__":
            continue
        elements = 1
        for dim in tensor["shape"]:
            elements *= int(dim)
        count += elements
    return count


def _stored_precision(folder: Path) -> str:
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "float32"
    return str(config.get("torch_dtype") or config.get("dtype") or "float32")


def check_fits(name: str, size: int, budget: int | None) -> None:
    """Raise :class:`ConfigError`, in one line naming the size and the budget, if a model
    of ``size`` bytes cannot fit a budget of ``budget`` bytes even alone."""
    if budget is not None and size > budget:
        raise ConfigError(
            f"{name} needs {format_memory(size)} of device memory, more than the "
            f"{format_memory(budget)} budget: give a larger --device-memory, or a quantized "
            "variant of the model (e.g. @nf4)"
        )


@dataclass
class _Resident:
    backend: Backend
    name: str
    size: int


class Residency:
    """The loaded backends, within ``budget`` bytes of device memory (``None``: no
    limit), least recently used evicted first.

    Args:
        budget: bytes the loaded models may take together.
        on_event: receives one line per load and eviction, with its seconds.
        clock: the seconds loads and evictions are timed with (a benchmark's virtual
            clock, say).
    """

    def __init__(
        self,
        budget: int | None,
        on_event: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.budget = budget
        self.on_event = on_event or (lambda _text: None)
        self.clock = clock
        self._resident: OrderedDict[Hashable, _Resident] = OrderedDict()
        self._evicted: set[Hashable] = set()
        self.loads = 0
        self.reloads = 0  # loads of a model evicted before
        self.evictions = 0
        self.peak = 0  # the most bytes resident at once
        #: Seconds spent on loads that evicted a model to make room, or that loaded again
        #: one evicted before (with their evictions): what switching between models that
        #: do not fit together costs. A first load that has to evict counts: it is the
        #: first switch, and measures one, before any model is loaded a second time.
        self.switch_seconds = 0.0

    @property
    def used(self) -> int:
        """Bytes the loaded models take."""
        return sum(r.size for r in self._resident.values())

    def resident(self) -> tuple[Hashable, ...]:
        """The keys of the loaded models, least recently used first."""
        return tuple(self._resident)

    def get(self, key: Hashable, name: str, size: int, load: Callable[[], Backend]) -> Backend:
        """The backend of ``key`` (its weights), loading it with ``load`` if it is not
        loaded: after evicting, least recently used first, what keeps a model of
        ``size`` bytes from fitting. ``name`` names it in the lines of the log."""
        if key in self._resident:
            self._resident.move_to_end(key)
            return self._resident[key].backend
        check_fits(name, size, self.budget)
        start, evictions = self.clock(), self.evictions
        while self.budget is not None and self.used + size > self.budget:
            self._evict(next(iter(self._resident)), reason=name)
        crash_point("loading")
        backend = load()
        size = max(size, backend.memory_bytes())
        self._resident[key] = _Resident(backend, name, size)
        self.loads += 1
        # Loaded, a model may take more than its estimate: make room after the fact too.
        while self.budget is not None and self.used > self.budget and len(self._resident) > 1:
            self._evict(next(iter(self._resident)), reason=name)
        self.peak = max(self.peak, self.used)
        seconds = self.clock() - start
        reloaded = key in self._evicted
        self.reloads += reloaded
        if reloaded or self.evictions > evictions:
            self.switch_seconds += seconds
        again = " again" if reloaded else ""
        self.on_event(f"loaded {name}{again} ({format_memory(size)}) in {seconds:.1f} s"
                      f"{self._room()}")  # fmt: skip
        return backend

    def close(self) -> None:
        """Evict every loaded model."""
        for key in list(self._resident):
            self._evict(key, reason="")

    def _evict(self, key: Hashable, reason: str) -> None:
        resident = self._resident.pop(key)
        self._evicted.add(key)
        start = self.clock()
        resident.backend.close()
        self.evictions += 1
        why = f" to make room for {reason}" if reason else ""
        self.on_event(f"evicted {resident.name} ({format_memory(resident.size)}){why} in "
                      f"{self.clock() - start:.1f} s")  # fmt: skip

    def _room(self) -> str:
        if self.budget is None:
            return ""
        return f"; {format_memory(self.used)} of {format_memory(self.budget)} in use"
