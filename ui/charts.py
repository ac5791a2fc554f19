"""Training curves as plotly figures: pure functions of metric series, no services, no gradio."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import plotly.graph_objects as go

Points = Sequence[tuple[int, float]]
Metrics = Mapping[str, Points]

WAITING = "Waiting for the first step…"
CHOOSE_RUNS = "Choose runs above to compare their loss"
HEIGHT = 320
# A few hundred points read well as lines; markers on top of them turn into a smear.
MARKERS_UP_TO = 60
# Colour-blind-safe (Okabe-Ito), so train and eval, or run A and run B, stay apart for everyone.
COLOURS = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")


def _figure(title: str, y_title: str) -> go.Figure:
    figure = go.Figure()
    figure.update_layout(
        title={"text": title, "x": 0.01, "font": {"size": 15}},
        height=HEIGHT,
        template="plotly_white",
        margin={"l": 60, "r": 20, "t": 50, "b": 45},
        font={"size": 13},
        hovermode="x unified",
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "xanchor": "right", "x": 1},
        xaxis_title="step",
        yaxis_title=y_title,
    )
    return figure


def _waiting(figure: go.Figure, text: str = WAITING) -> go.Figure:
    # Hidden axes: an empty grid with 0–1 ticks reads as "the loss is zero".
    figure.update_xaxes(visible=False)
    figure.update_yaxes(visible=False)
    figure.add_annotation(text=text, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper", font={"size": 16, "color": "#666"})
    return figure


def _add_line(figure: go.Figure, name: str, points: Points, colour: str, dash: str | None = None) -> None:
    steps = [step for step, _ in points]
    values = [value for _, value in points]
    mode = "lines+markers" if len(points) <= MARKERS_UP_TO else "lines"
    figure.add_trace(
        go.Scatter(x=steps, y=values, name=name, mode=mode, line={"color": colour, "width": 2, "dash": dash}, marker={"size": 6})
    )


def _single(metrics: Metrics, key: str, title: str, y_title: str, colour: str) -> go.Figure:
    figure = _figure(title, y_title)
    points = metrics.get(key) or []
    if not points:
        return _waiting(figure)
    _add_line(figure, y_title, points, colour)
    figure.update_layout(showlegend=False)
    return figure


def loss_figure(metrics: Metrics) -> go.Figure:
    """Train loss with eval loss on the same axes: the gap between them is the point of the chart."""
    figure = _figure("Loss", "loss")
    train, evaluation = metrics.get("loss") or [], metrics.get("eval_loss") or []
    if not train and not evaluation:
        return _waiting(figure)
    if train:
        _add_line(figure, "train loss", train, COLOURS[0])
    if evaluation:
        # Eval points are few and far apart: always markers, so a single one is visible.
        figure.add_trace(
            go.Scatter(
                x=[s for s, _ in evaluation],
                y=[v for _, v in evaluation],
                name="eval loss",
                mode="lines+markers",
                line={"color": COLOURS[1], "width": 2, "dash": "dash"},
                marker={"size": 9, "symbol": "diamond"},
            )
        )
    return figure


def learning_rate_figure(metrics: Metrics) -> go.Figure:
    figure = _single(metrics, "learning_rate", "Learning rate", "learning rate", COLOURS[2])
    figure.update_yaxes(exponentformat="e")
    return figure


def grad_norm_figure(metrics: Metrics) -> go.Figure:
    return _single(metrics, "grad_norm", "Gradient norm", "grad norm", COLOURS[3])


def throughput_figure(metrics: Metrics) -> go.Figure:
    return _single(metrics, "tokens_per_s", "Throughput", "tokens/s", COLOURS[4])


def compare_figure(curves: Mapping[str, Points], title: str = "Train loss by run") -> go.Figure:
    """Several runs' curves on one chart, one colour each, in the order given."""
    figure = _figure(title, "loss")
    if not curves:
        return _waiting(figure, CHOOSE_RUNS)
    drawn = [(label, points) for label, points in curves.items() if points]
    if not drawn:
        return _waiting(figure)
    for index, (label, points) in enumerate(drawn):
        _add_line(figure, label, points, COLOURS[index % len(COLOURS)])
    return figure


# -- DPO and GRPO: the method's own numbers, under TRL's names ------------------------------------------

DPO_REWARDS = (("rewards/chosen", "chosen"), ("rewards/rejected", "rejected"), ("rewards/margins", "margin"))
DPO_ACCURACY = "rewards/accuracies"
GRPO_REWARD, GRPO_REWARD_STD = "reward", "reward_std"
GRPO_KL, GRPO_LENGTH = "kl", "completions/mean_length"


def _translucent(colour: str, alpha: float = 0.18) -> str:
    red, green, blue = (int(colour[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({red},{green},{blue},{alpha})"


def _add_band(figure: go.Figure, name: str, mean: Points, std: Points, colour: str) -> None:
    """mean ± std as a shaded band, at the steps that have both."""
    spread = dict(std)
    steps = [step for step, _ in mean if step in spread]
    if not steps:
        return
    centre = dict(mean)
    upper = [centre[s] + spread[s] for s in steps]
    lower = [centre[s] - spread[s] for s in steps]
    figure.add_trace(
        go.Scatter(
            x=steps + steps[::-1],
            y=upper + lower[::-1],
            name=f"{name} ± std",
            fill="toself",
            fillcolor=_translucent(colour),
            line={"width": 0},
            hoverinfo="skip",
            showlegend=False,
        )
    )


def dpo_rewards_figure(metrics: Metrics) -> go.Figure:
    """Implicit rewards of the chosen and rejected answers, and their margin: chosen should pull away."""
    figure = _figure("DPO rewards", "reward")
    drawn = [(key, label, metrics.get(key) or []) for key, label in DPO_REWARDS]
    if not any(points for _, _, points in drawn):
        return _waiting(figure)
    for index, (_, label, points) in enumerate(drawn):
        if points:
            _add_line(figure, label, points, COLOURS[index], dash="dot" if label == "margin" else None)
    return figure


def dpo_accuracy_figure(metrics: Metrics) -> go.Figure:
    """Share of pairs whose chosen answer out-scores the rejected one."""
    figure = _single(metrics, DPO_ACCURACY, "DPO preference accuracy", "accuracy", COLOURS[2])
    if metrics.get(DPO_ACCURACY):
        figure.update_yaxes(range=[0, 1.02], tickformat=".0%")
    return figure


def reward_function_names(metrics: Metrics) -> list[str]:
    """The reward functions that logged a mean (``rewards/<name>/mean``), in name order."""
    return sorted(key[len("rewards/") : -len("/mean")] for key in metrics if key.startswith("rewards/") and key.endswith("/mean"))


def grpo_rewards_figure(metrics: Metrics) -> go.Figure:
    """The weighted reward's mean with a ±std band, and each reward function's mean and band."""
    figure = _figure("GRPO rewards", "reward")
    total = metrics.get(GRPO_REWARD) or []
    names = reward_function_names(metrics)
    if not total and not names:
        return _waiting(figure)
    if total:
        _add_band(figure, "reward", total, metrics.get(GRPO_REWARD_STD) or [], COLOURS[0])
        _add_line(figure, "reward (weighted sum)", total, COLOURS[0])
    for index, name in enumerate(names, start=1):
        colour = COLOURS[index % len(COLOURS)]
        mean = metrics.get(f"rewards/{name}/mean") or []
        _add_band(figure, name, mean, metrics.get(f"rewards/{name}/std") or [], colour)
        _add_line(figure, name, mean, colour, dash="dot")
    return figure


def grpo_kl_length_figure(metrics: Metrics) -> go.Figure:
    """KL to the reference (left axis) and mean completion length in tokens (right axis)."""
    figure = _figure("GRPO KL and completion length", "KL")
    kl, length = metrics.get(GRPO_KL) or [], metrics.get(GRPO_LENGTH) or []
    if not kl and not length:
        return _waiting(figure)
    if kl:
        _add_line(figure, "KL", kl, COLOURS[5])
    if length:
        _add_line(figure, "completion length", length, COLOURS[4], dash="dash")
        figure.data[-1].update(yaxis="y2")
        figure.update_layout(yaxis2={"title": "tokens", "overlaying": "y", "side": "right", "showgrid": False}, margin={"r": 60})
    return figure


METHOD_FIGURES = {"dpo": (dpo_rewards_figure, dpo_accuracy_figure), "grpo": (grpo_rewards_figure, grpo_kl_length_figure)}
