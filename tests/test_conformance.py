"""Every backend passes the shared conformance suite, grukit.testing.check_backend."""

import pytest

from grukit.testing import check_backend


@pytest.mark.parametrize("backend", ["cpu", "torch", "reference"])
def test_backend_conforms(backend):
    assert check_backend(backend) > 0
