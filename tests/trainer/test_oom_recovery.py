"""Out-of-memory recovery (issue 19): the micro-batch it falls back to keeps the rows per optimizer step."""

from __future__ import annotations

from trainer.oom_recovery import MAX_RECOVERIES, Recovery, smaller_micro_batch


def test_a_smaller_micro_batch_keeps_the_rows_per_optimizer_step() -> None:
    assert smaller_micro_batch(8, 1) == (4, 2)
    assert smaller_micro_batch(4, 2) == (2, 4)
    assert smaller_micro_batch(6, 3) == (3, 6)
    assert smaller_micro_batch(5, 2) == (1, 10)  # no divisor between: one row at a time, still 10 rows a step
    assert smaller_micro_batch(1, 8) is None  # one row cannot be split: the error stands
    for rows, accumulation in ((8, 1), (64, 1), (12, 2)):
        smaller = smaller_micro_batch(rows, accumulation)
        assert smaller is not None and smaller[0] * smaller[1] == rows * accumulation
    assert MAX_RECOVERIES == 2


def test_the_note_is_what_the_user_reads() -> None:
    note = Recovery(step=7, rows_before=8, accumulation_before=1, rows=4, accumulation=2, resumed_from="/c/checkpoint-6").note
    assert note.startswith("recovered from out-of-memory at step 7") and "same 8 rows per optimizer step" in note
