"""The plugin's tests run pytest inside pytest (pytester): each writes a test file, runs it,
and reads the outcome, the report and the JUnit XML."""

pytest_plugins = ["pytester"]
