"""The serving layer between the HTTP contract and the pipeline: request validation, the scoring
service (readiness, dedup, admission, deadlines, cancellation, grouping across calls), the engine's
lifecycle, the trainers' row formats (OpenRLHF rows, rerank groups, chat markup) and the error table."""
