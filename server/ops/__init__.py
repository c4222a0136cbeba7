"""What operators read: Prometheus metrics (and the middleware that counts requests) and JSON logs."""
