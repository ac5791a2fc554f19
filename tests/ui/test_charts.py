"""The chart functions: the points given are the points drawn, and no data says so."""

from __future__ import annotations

import pytest

from ui import charts

METRICS = {
    "loss": [(1, 2.5), (2, 2.1), (3, 1.8), (4, 1.6)],
    "eval_loss": [(2, 2.3), (4, 1.9)],
    "learning_rate": [(1, 2e-4), (2, 1.8e-4), (3, 1.2e-4), (4, 5e-5)],
    "grad_norm": [(1, 3.0), (2, 2.0), (3, 1.5), (4, 1.1)],
    "tokens_per_s": [(1, 900.0), (2, 950.0), (3, 940.0), (4, 960.0)],
}


def test_the_loss_chart_draws_train_and_eval_loss_on_one_axis() -> None:
    figure = charts.loss_figure(METRICS)

    traces = {trace.name: trace for trace in figure.data}
    assert set(traces) == {"train loss", "eval loss"}
    assert list(traces["train loss"].x) == [1, 2, 3, 4] and list(traces["train loss"].y) == [2.5, 2.1, 1.8, 1.6]
    assert list(traces["eval loss"].x) == [2, 4] and list(traces["eval loss"].y) == [2.3, 1.9]
    assert figure.layout.xaxis.title.text == "step"
    assert not figure.layout.annotations


def test_eval_loss_alone_is_drawn_without_waiting() -> None:
    figure = charts.loss_figure({"eval_loss": [(10, 1.0)]})

    assert [trace.name for trace in figure.data] == ["eval loss"]
    assert "markers" in figure.data[0].mode  # a single point must be visible


@pytest.mark.parametrize(
    "draw, key",
    [
        (charts.learning_rate_figure, "learning_rate"),
        (charts.grad_norm_figure, "grad_norm"),
        (charts.throughput_figure, "tokens_per_s"),
    ],
)
def test_each_single_metric_chart_draws_its_series(draw, key: str) -> None:
    figure = draw(METRICS)

    assert len(figure.data) == 1
    assert list(zip(figure.data[0].x, figure.data[0].y)) == METRICS[key]


@pytest.mark.parametrize(
    "draw",
    [
        charts.loss_figure,
        charts.learning_rate_figure,
        charts.grad_norm_figure,
        charts.throughput_figure,
        lambda metrics: charts.compare_figure({"run a": metrics.get("loss", [])}),
    ],
)
def test_no_data_yet_shows_waiting_instead_of_an_empty_grid(draw) -> None:
    figure = draw({})

    assert len(figure.data) == 0
    assert [a.text for a in figure.layout.annotations] == [charts.WAITING]
    assert figure.layout.xaxis.visible is False


def test_long_runs_drop_the_markers() -> None:
    many = [(step, 1.0 / step) for step in range(1, 501)]

    assert charts.loss_figure({"loss": many}).data[0].mode == "lines"
    assert charts.loss_figure({"loss": many[:10]}).data[0].mode == "lines+markers"


def test_the_overlay_has_one_trace_per_run_in_order_and_skips_runs_without_points() -> None:
    figure = charts.compare_figure(
        {
            "run a": [(1, 2.0), (2, 1.5)],
            "run b (queued)": [],
            "run c": [(1, 2.2), (2, 1.7), (3, 1.4)],
        }
    )

    assert [trace.name for trace in figure.data] == ["run a", "run c"]
    assert list(figure.data[1].x) == [1, 2, 3]
    assert figure.data[0].line.color != figure.data[1].line.color


DPO = {
    "rewards/chosen": [(1, 0.1), (2, 0.4), (3, 0.9)],
    "rewards/rejected": [(1, -0.1), (2, -0.5), (3, -1.2)],
    "rewards/margins": [(1, 0.2), (2, 0.9), (3, 2.1)],
    "rewards/accuracies": [(1, 0.5), (2, 0.75), (3, 1.0)],
}
GRPO = {
    "reward": [(1, 0.5), (2, 0.8)],
    "reward_std": [(1, 0.2), (2, 0.1)],
    "rewards/exact_match/mean": [(1, 0.25), (2, 0.5)],
    "rewards/exact_match/std": [(1, 0.4), (2, 0.5)],
    "rewards/regex_match/mean": [(1, 1.0), (2, 1.0)],
    "kl": [(1, 0.0), (2, 0.02)],
    "completions/mean_length": [(1, 30.0), (2, 24.0)],
}


def test_the_dpo_charts_draw_rewards_margin_and_accuracy() -> None:
    rewards = {trace.name: trace for trace in charts.dpo_rewards_figure(DPO).data}
    accuracy = charts.dpo_accuracy_figure(DPO)

    assert list(rewards) == ["chosen", "rejected", "margin"]
    assert list(zip(rewards["margin"].x, rewards["margin"].y)) == DPO["rewards/margins"]
    assert list(zip(accuracy.data[0].x, accuracy.data[0].y)) == DPO["rewards/accuracies"]
    assert tuple(accuracy.layout.yaxis.range) == (0, 1.02)


def test_the_grpo_reward_chart_bands_each_mean_with_its_std() -> None:
    figure = charts.grpo_rewards_figure(GRPO)

    traces = {trace.name: trace for trace in figure.data}
    assert list(traces) == ["reward ± std", "reward (weighted sum)", "exact_match ± std", "exact_match", "regex_match"]
    band = traces["reward ± std"]
    assert list(band.x) == [1, 2, 2, 1] and list(band.y) == pytest.approx([0.7, 0.9, 0.7, 0.3]) and band.fill == "toself"
    assert list(traces["regex_match"].y) == [1.0, 1.0]  # no std logged: a line without a band
    assert charts.reward_function_names(GRPO) == ["exact_match", "regex_match"]


def test_the_grpo_kl_and_length_share_a_chart_on_two_axes() -> None:
    figure = charts.grpo_kl_length_figure(GRPO)

    kl, length = figure.data
    assert (kl.name, list(kl.y)) == ("KL", [0.0, 0.02])
    assert (length.name, length.yaxis, list(length.y)) == ("completion length", "y2", [30.0, 24.0])
    assert figure.layout.yaxis2.overlaying == "y"


@pytest.mark.parametrize(
    "draw", [charts.dpo_rewards_figure, charts.dpo_accuracy_figure, charts.grpo_rewards_figure, charts.grpo_kl_length_figure]
)
def test_method_charts_wait_for_their_first_numbers(draw) -> None:
    figure = draw({"loss": [(1, 2.0)]})

    assert len(figure.data) == 0 and [a.text for a in figure.layout.annotations] == [charts.WAITING]
