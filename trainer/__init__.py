"""Subprocess entry points that own torch/transformers/peft: training, evaluation, export, serving and the demo kit."""

import time

# When this process began its Python work: a slow start's log says how much went to imports.
PROCESS_STARTED = time.monotonic()
