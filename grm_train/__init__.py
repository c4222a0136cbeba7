"""grm-train: fine-tune a GRM on preference data (SPCT rejective fine-tuning)."""
