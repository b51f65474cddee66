"""A real local Ray for the worker tests (2 CPUs), started once and shared."""

from __future__ import annotations

import pytest
import ray


@pytest.fixture(scope="session")
def local_ray():
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    if started:
        ray.shutdown()
