"""Root conftest: loads the ldm-diagnostics pytest plugin for `pytest checks/` (and the harness tests)."""

pytest_plugins = ["diagnostics.pytest_plugin"]
