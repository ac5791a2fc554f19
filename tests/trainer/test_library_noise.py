"""Library messages of a healthy run are silenced one by one; the same libraries' other messages still reach the log."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator

import pytest

from trainer.library_noise import BNB_CPU_LOGGER, OptionalKernelNotice, quiet_library_noise


@pytest.fixture
def quieted() -> Iterator[None]:
    with warnings.catch_warnings():  # the warning filters are the process's: put them back afterwards
        warnings.simplefilter("always")
        quiet_library_noise()
        yield
    logger = logging.getLogger(BNB_CPU_LOGGER)
    for added in [f for f in logger.filters if isinstance(f, OptionalKernelNotice)]:
        logger.removeFilter(added)


def test_the_optional_cpu_kernel_notice_goes_and_other_bitsandbytes_warnings_stay(quieted, caplog) -> None:
    logger = logging.getLogger(BNB_CPU_LOGGER)
    with caplog.at_level(logging.WARNING, logger=BNB_CPU_LOGGER):
        logger.warning(
            "Failed to load CPU gemm_4bit_forward from kernels-community: %s. Please make sure you already `pip install kernels`",
            ModuleNotFoundError("No module named 'kernels'"),
        )
        logger.warning("Failed to load CPU-only bitsandbytes library")

    assert [r.getMessage() for r in caplog.records] == ["Failed to load CPU-only bitsandbytes library"]


def test_only_the_deprecated_property_warning_of_transformers_goes(quieted) -> None:
    def warn(message: str, category: type[Warning], module: str) -> None:
        warnings.warn_explicit(message, category, "modeling_utils.py", 3312, module=module)

    with warnings.catch_warnings(record=True) as caught:
        warn("`is_gradient_checkpointing` is deprecated and will be removed in v6.", FutureWarning, "transformers.modeling_utils")
        warn("`torch_dtype` is deprecated! Use `dtype` instead!", FutureWarning, "transformers.modeling_utils")
        warn("`is_gradient_checkpointing` is deprecated and will be removed in v6.", FutureWarning, "some_other_library")

    assert [(str(w.message)[:26], w.category) for w in caught] == [
        ("`torch_dtype` is deprecate", FutureWarning),
        ("`is_gradient_checkpointing", FutureWarning),
    ]
