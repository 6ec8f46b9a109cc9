"""Training: one loop for all stages, schedules, checkpoints, reports."""
