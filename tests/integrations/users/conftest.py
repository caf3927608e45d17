"""The User Service stub, wired in as USER_SERVICE_URL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integrations.stub_server import StubServer, running_stub


@pytest.fixture
def user_service(settings) -> Iterator[StubServer]:
    with running_stub() as stub:
        settings.USER_SERVICE_URL = stub.url
        yield stub
