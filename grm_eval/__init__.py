"""grm-eval: accuracy and inference-time-scaling curves of a GRM on preference data."""
