"""The tests' shared support lives in tests/support/; its fixtures are this plugin."""

pytest_plugins = ["tests.support.fixtures", "tests.support.web_fixtures"]
