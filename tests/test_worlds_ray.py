"""The worlds' verification on a Ray cluster of this machine gives the local verdicts, record for record."""

import random

import pytest

from touchstone.worlds import get_world

pytest.importorskip("ray")

WORLDS = ("numbers", "code", "wing", "colour", "facts")


@pytest.fixture(scope="module")
def cluster():
    import ray

    yield
    ray.shutdown()


@pytest.mark.parametrize("name", WORLDS)
def test_verdicts_on_ray_equal_the_local_ones(cluster, name):
    from touchstone.worlds.on_ray import verify_many_on_ray

    world = get_world(name)
    records = world.render(random.Random(7), 12)
    # Wrong labels as well as right ones: a verifier that agreed with everything would pass otherwise.
    flipped = [{**r, "label": {"a": "b", "b": "a", True: False, False: True}[r["label"]]} for r in records[:4]]
    batch = records + flipped
    local = world.verify_many(batch)
    on_ray = verify_many_on_ray(name, batch, num_cpus=2, chunk=5)
    assert [v.to_dict() for v in on_ray] == [v.to_dict() for v in local]
    assert any(v.ok for v in local) and not all(v.ok for v in local)
