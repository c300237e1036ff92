"""What the tests share: fake remote services, worker processes, servers, helpers, and the
fixtures (`fixtures.py`, registered as a pytest plugin by tests/conftest.py)."""
