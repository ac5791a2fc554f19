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
        title={"text": title, "x": 0.01, "font": {"size": 15}}, height=HEIGHT, template="plotly_white",
        margin={"l": 60, "r": 20, "t": 50, "b": 45}, font={"size": 13}, hovermode="x unified",
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "xanchor": "right", "x": 1},
        xaxis_title="step", yaxis_title=y_title,
    )
    return figure


def _waiting(figure: go.Figure, text: str = WAITING) -> go.Figure:
    # Hidden axes: an empty grid with 0–1 ticks reads as "the loss is zero".
    figure.update_xaxes(visible=False)
    figure.update_yaxes(visible=False)
    figure.add_annotation(text=text, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper",
                          font={"size": 16, "color": "#666"})
    return figure


def _add_line(figure: go.Figure, name: str, points: Points, colour: str, dash: str | None = None) -> None:
    steps = [step for step, _ in points]
    values = [value for _, value in points]
    mode = "lines+markers" if len(points) <= MARKERS_UP_TO else "lines"
    figure.add_trace(go.Scatter(x=steps, y=values, name=name, mode=mode,
                                line={"color": colour, "width": 2, "dash": dash}, marker={"size": 6}))


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
        figure.add_trace(go.Scatter(x=[s for s, _ in evaluation], y=[v for _, v in evaluation], name="eval loss",
                                    mode="lines+markers", line={"color": COLOURS[1], "width": 2, "dash": "dash"},
                                    marker={"size": 9, "symbol": "diamond"}))
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
