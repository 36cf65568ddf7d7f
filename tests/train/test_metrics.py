"""The loss-history plot that fine-tuning and task jobs write."""

from __future__ import annotations

import pytest

from titanmem.train.metrics import plot_loss_history

PNG = b"\x89PNG\r\n\x1a\n"


def test_the_loss_history_plot_is_written_with_skipped_steps_marked(tmp_path, monkeypatch):
    import matplotlib.axes

    drawn = []
    real_plot = matplotlib.axes.Axes.plot
    monkeypatch.setattr(matplotlib.axes.Axes, "plot",
                        lambda self, *args, **kw: drawn.append(kw.get("label")) or real_plot(self, *args, **kw))
    history = [{"step": s, "loss": 1.0 / s, "skipped": s == 3} for s in range(1, 8)]
    out = plot_loss_history(history, tmp_path / "curve.png", title="t", window=3)
    assert out.read_bytes()[:8] == PNG
    assert drawn == ["loss of the step", "mean of the last 3 steps", "skipped (gradient not finite)"]


@pytest.mark.parametrize("history, window, match", [([], 5, "history"), ([{"step": 1, "loss": 1.0}], 0, "window")])
def test_the_loss_history_plot_refuses_bad_arguments(tmp_path, history, window, match):
    with pytest.raises(ValueError, match=match):
        plot_loss_history(history, tmp_path / "x.png", window=window)
