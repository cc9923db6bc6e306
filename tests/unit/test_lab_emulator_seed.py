"""The lab's emulator reseeded to its baseline names every resource as before (lab/aws.py seed_random before
aws.seed): the outputs, and the workloads rendered from them, stay the same across restore_baseline (moto's own
server on loopback)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from moto.server import ThreadedMotoServer

from drtopo.settings import load_settings
from lab import aws
from lab.core import EMULATOR_SEED

STACKS = ("prod", "dr")


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    try:
        yield url
    finally:
        # moto's backends are one per process: leave none of this module's resources to the next module's server.
        aws.reset(url)
        server.stop()


def test_the_same_seed_makes_the_same_resources_and_another_seed_other_ones(endpoint: str) -> None:
    settings = {s: load_settings(s) for s in STACKS}

    def reseeded(seed: int) -> dict[str, aws.StackResources]:
        aws.reset(endpoint)
        aws.seed_random(endpoint, seed)
        return aws.seed(endpoint, settings, None, "lab-password")

    first, again, other = reseeded(EMULATOR_SEED), reseeded(EMULATOR_SEED), reseeded(EMULATOR_SEED + 1)
    assert first == again
    assert first["prod"].kms_key_arn != other["prod"].kms_key_arn  # the ids do come from the seed
    assert first["prod"].health_check_id != other["prod"].health_check_id
