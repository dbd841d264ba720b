"""The progress line, label colouring and IoU arithmetic."""

import numpy as np

from dpc_tf.training import summaries
from dpc_tf.training.progress import ProgressMeter, format_duration


def test_progress_line_reports_rate_and_eta():
  now = [100.0]
  meter = ProgressMeter(num_steps=1000, start_step=10, batch_size=8, clock=lambda: now[0])
  assert "steps/s" not in meter.line(10, 1.0, 0.01)  # not started: no rate yet
  meter = ProgressMeter(num_steps=1000, start_step=10, batch_size=8, clock=lambda: now[0])
  meter.start()
  now[0] = 110.0
  line = meter.line(60, 0.5, 0.005)
  assert "step 60/1000" in line and "loss 0.5000" in line
  assert "5.00 steps/s" in line and "40.0 images/s" in line
  assert "ETA 0:03:08" in line  # 940 steps at 5/s


def test_format_duration():
  assert format_duration(3725) == "1:02:05"
  assert format_duration(-3) == "0:00:00"


def test_colorize_and_overlay():
  palette = np.array([[0, 0, 0], [255, 0, 0]], np.uint8)
  labels = np.array([[0, 1], [255, 1]])
  colours = summaries.colorize(labels, palette)
  np.testing.assert_array_equal(colours[0, 1], [255, 0, 0])
  np.testing.assert_array_equal(colours[1, 0], [255, 255, 255])  # ignore colour
  image = np.full((2, 2, 3), 100, np.uint8)
  blended = summaries.overlay(image, labels, palette, alpha=0.5)
  np.testing.assert_array_equal(blended[0, 0], [50, 50, 50])
  np.testing.assert_array_equal(blended[0, 1], [178, 50, 50])


def test_comparison_strip_shape():
  strip = summaries.comparison_strip(np.zeros((2, 4, 5, 3)), np.zeros((2, 4, 5, 1), np.int32),
                                     np.ones((2, 4, 5), np.int32),
                                     np.array([[0, 0, 0], [9, 9, 9]], np.uint8))
  assert strip.shape == (2, 4, 15, 3) and strip.dtype == np.uint8
  assert (strip[:, :, 10:] == 9).all()
