"""Rules turn facts into findings. Each module ends with the `CHECKS` that the front-ends run."""
