"""GPU placement: FIFO, disjoint GPUs run at once, an earlier waiting run keeps its claim."""

from __future__ import annotations

from ftapp.runs.scheduler import plan_starts


def placed(plan) -> list[tuple[str, str]]:
    return [(p.run_id, p.label) for p in plan]


def test_disjoint_gpu_runs_start_together():
    plan = plan_starts([("a", "0"), ("b", "1")], busy_gpus=set(), cpu_runs=0, all_gpus=[0, 1])
    assert placed(plan) == [("a", "0"), ("b", "1")]


def test_a_busy_gpu_makes_its_run_wait():
    plan = plan_starts([("a", "0"), ("b", "1")], busy_gpus={0}, cpu_runs=0, all_gpus=[0, 1])
    assert placed(plan) == [("b", "1")]


def test_an_earlier_two_gpu_run_is_not_starved_by_later_one_gpu_runs():
    plan = plan_starts([("big", "0,1"), ("small", "1"), ("auto", "auto")], busy_gpus={0}, cpu_runs=0, all_gpus=[0, 1])
    assert placed(plan) == []


def test_auto_takes_any_free_gpu_and_falls_back_to_cpu_without_gpus():
    assert placed(plan_starts([("a", "auto")], set(), 0, [0, 1])) == [("a", "0")]
    assert placed(plan_starts([("a", "auto")], {0}, 0, [0, 1])) == [("a", "1")]
    assert placed(plan_starts([("a", "auto")], set(), 0, [])) == [("a", "cpu")]


def test_cpu_runs_are_limited():
    plan = plan_starts([("a", "cpu"), ("b", "cpu")], set(), cpu_runs=0, all_gpus=[], max_cpu_runs=1)
    assert placed(plan) == [("a", "cpu")]
    assert placed(plan_starts([("b", "cpu")], set(), cpu_runs=1, all_gpus=[], max_cpu_runs=1)) == []
