"""Episodes played by Ray actors across machines (`--cluster ray[:ADDRESS]`), the same episodes
the local loop plays.

Why it can split: every episode draws from its own random stream, keyed by the rollout's seed
and the episode's index (rollout.actors), and starts where its `Starts` row says. So the N
episodes are cut into one contiguous part per actor, each actor plays its part with the same
`loop.play` (told the index of its first episode), and the parts put back in index order are
the local rollout: same starts, same actions (up to the float rounding of a policy run on other
batch sizes, which flips a sampled action only when a draw lies within ~1e-7 of a boundary).

Failures: an actor that dies (a crashed process, a lost node) is restarted by Ray and its task
runs again from its part's first episode, so an episode is counted once, from the run that
finished; a part is a unit of retry. A cluster that cannot run the actors (no node has the
custom resource they ask for, an address where nothing answers) is a one-line error within
seconds, never a wait. A cluster started with `ray start` is unauthenticated unless its nodes
set RAY_AUTH_MODE=token: keep it on a private network (docs/distributed.md). Usage statistics
are off unless the environment turns them on.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import socket
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from agentalign import events
from agentalign.errors import UserError

if TYPE_CHECKING:  # the loop imports torch: settings that name a cluster load without it
    from agentalign.rollout.actors import Actor
    from agentalign.rollout.loop import Rollout
    from agentalign.rollout.starts import Starts

INSTALL = "pip install 'agentalign[distributed]'"
CONNECT_TIMEOUT_S = 5.0  # an address where nothing answers fails after this
RESTARTS = 4  # times Ray restarts a dead actor (and retries its part) before giving up


@dataclass(frozen=True)
class Cluster:
    """Where a rollout's actors run: `ray` starts a local Ray (on loopback), `ray:HOST:PORT`
    joins a running cluster through its head's GCS address."""

    address: str | None = None
    workers: int = 2  # Ray actors a rollout is cut into, or a trainer's Ray Train workers
    cpus: float = 1.0  # CPUs each actor reserves
    resources: dict[str, float] = field(default_factory=dict)  # custom ones, e.g. a game build

    @classmethod
    def parse(cls, text: str, **options: Any) -> Cluster:
        """`ray` or `ray:HOST:PORT`; a one-line UserError for anything else."""
        kind, _, address = text.partition(":")
        if kind != "ray" or (text.startswith("ray:") and not address):
            raise UserError(f"--cluster {text!r}: use ray (a local Ray) or ray:HOST:PORT (a "
                            "running cluster's head, e.g. ray:10.0.0.5:6379)")
        return cls(address or None, **options)


def connect(cluster: Cluster) -> Any:
    """Ray, initialised for `cluster` (idempotent within a process); one-line errors for a
    missing install and an address that does not answer."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if cluster.address is None:  # one machine: every process on loopback (Ray reads this when
        # imported; it would otherwise pick another interface)
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    try:
        import ray
    except ImportError:
        raise UserError(f"--cluster needs Ray, which is not installed: {INSTALL}") from None
    if ray.is_initialized():
        return ray
    if cluster.address is None:
        ray.init(include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1",
                 configure_logging=False)
        return ray
    host, _, port = cluster.address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S):
            pass
    except (OSError, ValueError) as e:
        raise UserError(f"--cluster ray:{cluster.address}: no Ray head answers there ({e}); "
                        "start one with `ray start --head` or check the address") from None
    ray.init(address=cluster.address, log_to_driver=False, configure_logging=False)
    return ray


def local_address(ray: Any) -> str:
    """The GCS address of the Ray this process started (or joined), for other processes."""
    return ray.get_runtime_context().gcs_address


def check_resources(ray: Any, cluster: Cluster) -> None:
    """Refuse, in one line, actors that no node of the cluster could ever host."""
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    need = {"CPU": cluster.cpus, **cluster.resources}
    if not any(all(n["Resources"].get(k, 0) >= v for k, v in need.items()) for n in nodes):
        have = sorted({k for n in nodes for k in n["Resources"]
                       if not k.startswith(("node:", "memory", "object_store"))})
        raise UserError(f"no node of the Ray cluster has {need} for an actor (its nodes have "
                        f"{', '.join(have) or 'nothing'}); start a node with them, e.g. "
                        "`ray start --address ... --resources '{\"NAME\": 1}'`")


@functools.cache
def _worker_class(ray: Any) -> Any:
    """The actor class, made remote once per process once Ray is imported (Ray is an optional
    dependency); a stage that plays several rollouts (label's shards) reuses it."""

    class EpisodeWorker:
        """Plays parts of rollouts. It keeps its environment between calls (a headless Unity
        build is launched once per worker, not per rollout) until asked for another one or
        closed."""

        def __init__(self) -> None:
            self.env: Any = None
            self.env_key: tuple | None = None

        def play(self, actor: Actor, starts: Starts, first: int,
                 options: dict[str, Any]) -> tuple[Rollout, Any]:
            from agentalign.rollout.loop import play

            options = {**options, "env": self._env(len(starts), options)}
            rollout = play(actor, starts, first=first, **options)
            rollout.settings["node"] = ray.get_runtime_context().get_node_id()
            # What the actor recorded per episode (a policy's acting log-probs and frame
            # encodings for RL) lives in this process's copy of it: it goes back too.
            lengths = {e.index: e.length for e in rollout.episodes}
            recorded = actor.recorded(lengths) if hasattr(actor, "recorded") else None
            return rollout, recorded

        def _env(self, rows: int, options: dict[str, Any]) -> Any:
            from agentalign.rollout.loop import rollout_env

            spec = options.get("env", "island")
            rows = min(options.get("num_envs", 64), rows)
            shape = {k: options[k] for k in ("layout", "height", "width", "max_steps")
                     if k in options}
            key = (spec, rows, repr(sorted(shape.items())))
            if key != self.env_key:
                self.close()
                self.env, self.env_key = rollout_env(spec, rows, **shape), key
            return self.env

        def close(self) -> None:
            if self.env is not None:
                self.env.close()  # a Unity build quits here
            self.env, self.env_key = None, None

    return ray.remote(max_restarts=RESTARTS, max_task_retries=RESTARTS)(EpisodeWorker)


def parts(total: int, actors: int) -> list[tuple[int, int]]:
    """Contiguous [first, stop) ranges of near-equal size, at most one per episode."""
    n = max(1, min(actors, total))
    bounds = [round(i * total / n) for i in range(n + 1)]
    return [(bounds[i], bounds[i + 1]) for i in range(n)]


class WorkerPool:
    """A cluster's Ray actors for one stage: started on first use, kept across its rollouts (RL
    plays one per iteration; starting actors costs seconds each time) and closed at its end,
    so that their CPUs go back to the cluster for the next stage. A context manager."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster, self.workers, self.group = cluster, [], None

    def play(self, actor: Actor, starts: Starts, **options: Any) -> Rollout:
        """`loop.play(actor, starts, **options)`, its episodes cut into parts played by the
        actors; episodes in index order, env steps summed, seconds the wall clock. What the
        actors recorded of each episode is put back into `actor` (`PolicyActor.keep`)."""
        from agentalign.rollout.loop import Rollout

        ray = connect(self.cluster)
        show, stage = options.get("progress", False), options.get("stage", "play")
        options = {**options, "progress": False}  # the actors' bars would go to their logs
        offset = options.pop("first", 0)  # starts[0]'s index in a larger rollout
        started = time.perf_counter()
        ranges = parts(len(starts), self.cluster.workers)
        workers = self._workers(ray, len(ranges))
        actor_ref = ray.put(actor)
        pending = [w.play.remote(actor_ref, starts.part(slice(a, b)), offset + a, options)
                   for w, (a, b) in zip(workers, ranges, strict=True)]
        waiting = dict(zip(pending, ranges, strict=True))
        try:  # a bar that moves as parts finish
            with events.progress(stage, len(starts), unit="ep", show=show) as bar:
                while waiting:
                    (ready,), _ = ray.wait(list(waiting), num_returns=1)
                    first, stop = waiting.pop(ready)
                    bar.update(stop - first)
            done = ray.get(pending)
        except BaseException:
            self.close()  # actors that gave up (or a stopped run): none is reused
            raise
        for _, recorded in done:
            if recorded is not None:
                actor.keep(recorded)  # type: ignore[attr-defined]
        rollouts = [r for r, _ in done]
        episodes = sorted((e for r in rollouts for e in r.episodes), key=lambda e: e.index)
        settings = {k: v for k, v in rollouts[0].settings.items() if k != "node"}
        return Rollout(episodes, time.perf_counter() - started,
                       sum(r.env_steps for r in rollouts),
                       {**settings, "cluster": self.cluster.address or "local",
                        "actors": len(ranges), "nodes": [r.settings["node"] for r in rollouts]})

    def _workers(self, ray: Any, n: int) -> list[Any]:
        if not self.workers:
            check_resources(ray, self.cluster)
            self.group = self._reserve(ray)
            # SPREAD (in the group): the parts go to different machines where there are several.
            from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

            self.workers = [_worker_class(ray).options(
                num_cpus=self.cluster.cpus, resources=self.cluster.resources,
                scheduling_strategy=PlacementGroupSchedulingStrategy(
                    self.group, placement_group_bundle_index=i))
                .remote() for i in range(self.cluster.workers)]
        return self.workers[:n]

    def _reserve(self, ray: Any) -> Any:
        """All the pool's CPUs at once (a placement group): two stages that each got part of
        what they need would otherwise wait for each other forever."""
        from ray.util.placement_group import placement_group

        bundle = {"CPU": self.cluster.cpus, **self.cluster.resources}
        total = {k: sum(n["Resources"].get(k, 0) for n in ray.nodes() if n.get("Alive"))
                 for k in bundle}
        if any(total[k] < v * self.cluster.workers for k, v in bundle.items()):
            raise UserError(f"the Ray cluster has {total} in all, less than "
                            f"{self.cluster.workers} workers x {bundle}; use fewer "
                            "--cluster-workers or add nodes")
        return placement_group([bundle] * self.cluster.workers, strategy="SPREAD")

    def close(self) -> None:
        """Close the actors' environments (Unity builds quit), stop the actors and give their
        CPUs back."""
        if not self.workers:
            return
        import ray
        from ray.util.placement_group import remove_placement_group

        try:
            ray.wait([w.close.remote() for w in self.workers], num_returns=len(self.workers),
                     timeout=30)
        finally:
            for w in self.workers:
                ray.kill(w)
            remove_placement_group(self.group)
            self.workers, self.group = [], None

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


Where = Cluster | WorkerPool | None  # where a rollout plays: here, a cluster, a stage's actors


def play_on(where: Where, actor: Actor, starts: Starts, **options: Any) -> Rollout:
    """`loop.play` here when `where` is None, else on Ray actors (a cluster's, started and
    stopped for this rollout, or a stage's `WorkerPool`): the same episodes."""
    if where is None:
        from agentalign.rollout.loop import play

        return play(actor, starts, **options)
    if isinstance(where, WorkerPool):
        return where.play(actor, starts, **options)
    with WorkerPool(where) as pool:
        return pool.play(actor, starts, **options)


def pool_for(cluster: Cluster | None) -> contextlib.AbstractContextManager[WorkerPool | None]:
    """A stage's actors for all its rollouts (`with pool_for(cluster) as where:`); None here."""
    return WorkerPool(cluster) if cluster is not None else contextlib.nullcontext()


def cluster_arguments(parser: argparse.ArgumentParser, trains: bool = False,
                      what: str | None = None) -> None:
    """`--cluster`, `--cluster-workers`, `--cluster-resource` for a stage's command: where it
    runs, not what it computes, so they are not settings and leave a run's identity alone."""
    what = what or ("train on Ray Train workers" if trains else "play the episodes on Ray "
                    "actors")
    parser.add_argument("--cluster", metavar="ray[:HOST:PORT]", help=f"{what}: ray (a local "
                        "Ray) or ray:HOST:PORT (a running cluster); needs pip install "
                        "'agentalign[distributed]' (docs/distributed.md)")
    parser.add_argument("--cluster-workers", type=int, default=2, metavar="N",
                        help=("Ray Train workers (ranks)" if trains else "Ray workers the "
                              "work is split over") + ", one CPU each (default 2)")
    parser.add_argument("--cluster-resource", metavar="NAME", help="a custom Ray resource "
                        "each worker needs, e.g. unity_build: only nodes started with it host "
                        "one")


def cluster_request(args: argparse.Namespace) -> dict[str, Any]:
    """The stage function's `cluster` keyword for `cluster_arguments`' options ({} without)."""
    if args.cluster is None:
        return {}
    if args.cluster_workers < 1:
        raise UserError(f"--cluster-workers must be at least 1, got {args.cluster_workers}")
    resources = {args.cluster_resource: 1.0} if args.cluster_resource else {}
    return {"cluster": Cluster.parse(args.cluster, workers=args.cluster_workers,
                                     resources=resources)}
