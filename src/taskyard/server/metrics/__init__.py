"""Prometheus metrics: ``/metrics``, gauges read from the store at scrape time, counters fed by events."""
