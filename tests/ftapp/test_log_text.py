"""A failed run's error text: the supervisor's summary and suggestion, then the log's tail, which the pages that say
why a run failed leave out (the Runs tab's log box shows it)."""

from __future__ import annotations

from ftapp.runs.log_text import failure_summary, failure_text


def test_the_summary_is_what_comes_before_the_log_tail() -> None:
    stored = failure_text("CUDA out of memory.", "halve per_device_train_batch_size", "step 3\n--- log tail ---\nmore")

    assert failure_summary(stored) == "CUDA out of memory.\nSuggestion: halve per_device_train_batch_size"
    assert failure_summary("  a note without a tail \n") == "a note without a tail"
    assert failure_summary(None) == ""
