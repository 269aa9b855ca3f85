"""Generation: what a candidate is and how it writes code.

A :class:`Candidate` names a model (a local checkpoint, a PEFT adapter, a quantized
variant or a served model) and a prompt style (:mod:`engine.generation._candidates`).
:func:`resolve_model` and :func:`load_model` find and load its weights
(:mod:`engine.generation._models`, :mod:`engine.generation._adapters`,
:mod:`engine.generation._quantization`), :func:`build_prompts` writes its prompts
(:mod:`engine.generation._prompting`, with examples found by
:mod:`engine.generation._retrieval`), and a backend of :mod:`engine.generation.backends`
generates the completions. :class:`Residency` keeps the loaded models within a memory
budget of the device (:mod:`engine.generation._residency`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from engine._lazy import attach

if TYPE_CHECKING:
    from engine.generation._adapters import (
        METADATA_FILE,
        AdapterRef,
        adapter_home,
        check_adapter_fits,
        check_unseen,
        resolve_adapter,
    )
    from engine.generation._candidates import Candidate, parse_candidate, unique_names
    from engine.generation._catalog import available_models
    from engine.generation._models import (
        ModelRef,
        empty_model,
        load_model,
        resolve_device,
        resolve_model,
        visible_gpus,
    )
    from engine.generation._prompting import PromptStyle, build_prompts, parse_style
    from engine.generation._quantization import check_quantization
    from engine.generation._residency import (
        Residency,
        check_fits,
        device_budget,
        format_memory,
        parse_memory,
        weights_bytes,
    )

__getattr__, __dir__, __all__ = attach(__name__, __file__)
