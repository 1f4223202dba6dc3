"""A trainer (pretrain, sft, reward, the RL learner) on Ray Train: N workers across a Ray
cluster running the same DDP code torchrun runs.

Ray Train's `TorchTrainer` starts one worker process per rank, sets the torch.distributed
environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT) and starts the gloo (or nccl)
process group before calling the loop; `train.distributed.init_distributed` joins a group it
finds started, so the stage function runs unchanged: each rank reads its own shards, gradients
are averaged by DDP, rank 0 writes the stage folder. The files are the torchrun run's, so resume,
export and serve do not care where a model trained. On several machines the corpus and `--out`
must be on a filesystem every node sees (as for a multi-node torchrun job): rank 0 may run on
any of them. Rank 0's result comes back through a small actor, not a file. With one worker
there is no group to form: the stage runs as a plain Ray task (seconds sooner), retried if its
node is lost.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agentalign.errors import UserError
from agentalign.lifecycle import METRICS
from agentalign.rollout.cluster import INSTALL, RESTARTS, Cluster, check_resources, connect


def absolute(path: str | Path) -> Path:
    """A path the workers can use: their working directory is Ray's, not the caller's."""
    return Path(path).resolve()


def located(value: Any) -> Any:
    """A path made absolute (`absolute`); anything else (a RewardFunction) as it is."""
    return absolute(value) if isinstance(value, str | Path) else value


def _call(stage: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    return stage(*args, **kwargs, progress=False)


def fit(stage: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any],
        cluster: Cluster, out: Path) -> Any:
    """`stage(*args, **kwargs, progress=False)` on `cluster.workers` Ray Train workers (one CPU
    each, and `cluster.resources`); returns rank 0's result. A stage folder `out` that holds a
    finished run is handed to the stage here: it skips it (or refuses one of other settings)
    in a moment, where starting the workers takes seconds."""
    if (out / METRICS).exists():
        return _call(stage, args, kwargs)
    ray = connect(cluster)
    check_resources(ray, cluster)
    if cluster.workers == 1:  # one rank: a plain Ray task, without a process group to start
        task = ray.remote(max_retries=RESTARTS)(_call).options(
            num_cpus=cluster.cpus, resources=cluster.resources)
        return ray.get(task.remote(stage, args, kwargs))
    try:
        from ray.train import RunConfig, ScalingConfig
        from ray.train.torch import TorchTrainer
    except ImportError:
        raise UserError(f"training on a cluster needs Ray Train: {INSTALL}") from None

    @ray.remote(num_cpus=0)
    class Box:  # holds rank 0's result for the driver, wherever rank 0 ran
        def __init__(self) -> None:
            self.value: Any = None

        def put(self, value: Any) -> None:
            self.value = value

        def get(self) -> Any:
            return self.value

    box = Box.remote()

    def loop(config: dict[str, Any]) -> None:
        import torch.distributed as dist

        result = _call(stage, args, kwargs)
        if dist.get_rank() == 0:
            ray.get(config["box"].put.remote(result))

    with tempfile.TemporaryDirectory(prefix="agentalign-ray-train-") as scratch:
        trainer = TorchTrainer(
            loop, train_loop_config={"box": box},
            scaling_config=ScalingConfig(num_workers=cluster.workers, use_gpu=False,
                                         resources_per_worker={"CPU": cluster.cpus,
                                                               **cluster.resources}),
            run_config=RunConfig(storage_path=str(Path(scratch)), name="train"))
        outcome = trainer.fit()
    if outcome.error is not None:
        raise outcome.error
    result = ray.get(box.get.remote())
    ray.kill(box)
    return result
