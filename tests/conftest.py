"""The suite loads the project's own pytest plugin here rather than through its entry point, so
that coverage measurement has started before fibo_soap is imported."""

pytest_plugins = ("fibo_soap.testing",)
