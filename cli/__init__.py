"""The ``nats-heartbeat`` command line (click); the only place that configures logging."""
