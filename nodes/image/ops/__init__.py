"""What the image pack's nodes stand on: resampling as ComfyUI computes it,
reading input images under limits, and the size facts budgets propagate."""
