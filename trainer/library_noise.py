"""Messages the ML libraries print on every healthy run that say nothing about it, silenced one by one.

Each is matched by the logger or module that emits it and the start of its text, so every other message of
the same library, an error above all, still reaches trainer.log. Installed before those libraries are
imported (``python -m trainer`` does it first), since both are printed at import or model set-up.
"""

from __future__ import annotations

import logging
import warnings

# bitsandbytes, on a CPU with AVX512-BF16, tries at import to fetch an optional fused 4-bit kernel from the Hub
# (the ``kernels`` package) and warns when it cannot. ftapp runs offline and never installs it; bitsandbytes then
# uses its own CPU kernels, so a QLoRA run on a CPU still works and any other run never uses 4-bit matmuls at all.
BNB_CPU_LOGGER = "bitsandbytes.backends.cpu.ops"
BNB_OPTIONAL_KERNEL = "Failed to load CPU gemm_4bit_forward from kernels-community"
# PEFT reads this deprecated transformers property while it wraps every model; the run does not use it.
TRANSFORMERS_DEPRECATION = r"`is_gradient_checkpointing` is deprecated"
TRANSFORMERS_MODULE = r"transformers\.modeling_utils"


class OptionalKernelNotice(logging.Filter):
    """Drops bitsandbytes' notice about its optional CPU kernel, and nothing else of that logger."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(BNB_OPTIONAL_KERNEL)


def quiet_library_noise() -> None:
    logger = logging.getLogger(BNB_CPU_LOGGER)
    if not any(isinstance(f, OptionalKernelNotice) for f in logger.filters):
        logger.addFilter(OptionalKernelNotice())
    warnings.filterwarnings("ignore", message=TRANSFORMERS_DEPRECATION, category=FutureWarning, module=TRANSFORMERS_MODULE)
