"""Networks: registry, LightMCANet student, HRNet teacher, shared blocks."""
