"""The worlds' verification fanned out over a Ray cluster, for a user with more machines than one.

    pip install -e '.[scale]'          # ray among the scale-out engines
    RAY_ADDRESS=auto touchstone run     # with `verify_on: ray` in the workspace's config

`verify_many_on_ray(name, objs)` cuts the records into chunks and verifies each chunk in a Ray task with
the world's own `verify_many`, so a verdict is what the local pool gives on that record: the same tool,
the same code (the sandbox runs code inside the Ray worker, on the machine the task lands on, under the
isolation that machine has). Each Ray worker process makes a world once and keeps it. Without
RAY_ADDRESS a cluster of this machine is started (`touchstone.distributed.join_ray`).

Why Ray and not a pool of our own: scheduling, retries on lost workers and placement over machines are
what Ray is for; the local pools (the sandbox's workers, the wing solver's) stay the default.
"""

from __future__ import annotations

from touchstone.distributed import join_ray
from touchstone.errors import UserError
from touchstone.worlds import Verdict, get_world

CHUNK = 32  # records per Ray task: large enough that a task's overhead (~ms) is small beside its verdicts

_worlds: dict = {}  # in a Ray worker process: the worlds it has made, by (name, corpus)


def _verify_chunk(name: str, corpus: str | None, objs: list[dict]) -> list[Verdict]:
    key = (name, corpus)
    if key not in _worlds:
        _worlds[key] = get_world(name, corpus=corpus)
    return _worlds[key].verify_many(objs)


def verify_many_on_ray(
    name: str, objs: list[dict], corpus: str | None = None, num_cpus: int | None = None, chunk: int = CHUNK
) -> list[Verdict]:
    """`get_world(name, corpus).verify_many(objs)`, its chunks verified as Ray tasks; verdicts in order."""
    try:
        import ray
    except ImportError:
        raise UserError("verification on Ray needs ray: pip install -e '.[scale]'") from None
    if not objs:
        return []
    join_ray(num_cpus)
    task = ray.remote(_verify_chunk)
    refs = [task.remote(name, corpus, objs[i : i + chunk]) for i in range(0, len(objs), chunk)]
    return [v for verdicts in ray.get(refs) for v in verdicts]
