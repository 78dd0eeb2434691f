"""Static checks of the deployment files, and a harness running a real Prometheus (prometheus_harness.py)."""
