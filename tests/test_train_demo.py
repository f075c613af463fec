"""Smoke test of the demo training script."""

from train import demo


def test_demo_trains_both_modes_and_reports_accuracy(capsys):
    demo.main(["--epochs", "1", "--clips", "16"])
    out = capsys.readouterr().out
    assert "test clip accuracy:" in out
    assert "bp:" in out and "sideways:" in out
    video, labels = demo.brightness_squares(4, time=3, size=8)
    assert video.shape == (4, 3, 8, 8, 1) and labels.shape == (4,)
    assert video.max() <= 1.0 and video.min() >= 0.0
