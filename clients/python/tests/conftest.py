"""Fixtures the unit tests share."""

import pytest

CREDENTIAL_VARIABLES = (
    "LAMBDAWORKER_ACCESS_KEY",
    "LAMBDAWORKER_SECRET_KEY",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
)


@pytest.fixture
def no_keys(monkeypatch):
    """No credentials in the environment: clients made in the test do not sign."""
    for name in CREDENTIAL_VARIABLES:
        monkeypatch.delenv(name, raising=False)
