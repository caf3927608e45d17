"""The Clinic Service stub, wired in as CLINIC_SERVICE_URL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integrations.stub_server import StubServer, running_stub


@pytest.fixture
def clinic_service_stub(settings) -> Iterator[StubServer]:
    with running_stub() as stub:
        settings.CLINIC_SERVICE_URL = stub.url
        yield stub
