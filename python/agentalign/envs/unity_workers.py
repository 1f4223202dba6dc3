"""How `UnityVectorEnv` drives its workers: launch, reset, step and restart each UnityEnvironment.

`UnityWorkers` holds the methods that talk to one build (or the editor) at a time: starting it
on a free port, adopting its agents as rows after a reset, exchanging one step, and replacing it
when it crashes or goes silent (the policy is in `envs.unity`'s docstring). `UnityVectorEnv`
inherits them and runs them over all workers (`_map`); they keep no state of their own and use
the attributes and row methods `UnityVectorEnv` sets up.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import numpy as np

from agentalign.envs.unity_builds import (
    EngineError,
    _Ended,
    _one_line,
    _outcome_channel_class,
    _port_lock,
    _StepResult,
    _Worker,
    free_worker_ids,
)
from agentalign.spec import BEHAVIOR_NAME, SEED_MODULUS, SEED_PARAMETER, TARGET_PARAMETER

log = logging.getLogger("agentalign.unity")


class UnityWorkers:
    """The per-worker half of `UnityVectorEnv` (see the module docstring)."""

    def _map(self, func: Any, workers: list[_Worker], *args: Any) -> list[Any]:
        """Run `func(worker, *args)` for every worker, in parallel threads when there are
        several (each call mostly waits on its build's socket, so threads overlap well)."""
        if self._pool is None or len(workers) <= 1:
            return [func(w, *args) for w in workers]
        return list(self._pool.map(lambda w: func(w, *args), workers))

    def _launch(self, w: _Worker) -> None:
        """Start (or restart) worker `w`'s UnityEnvironment and queue its configuration."""
        from mlagents_envs.environment import UnityEnvironment
        from mlagents_envs.exception import UnityException
        from mlagents_envs.side_channel.engine_configuration_channel import (
            EngineConfigurationChannel,
        )
        from mlagents_envs.side_channel.environment_parameters_channel import (
            EnvironmentParametersChannel,
        )

        w.outcome_channel = _outcome_channel_class()()
        w.parameters_channel = EnvironmentParametersChannel()
        w.engine_channel = EngineConfigurationChannel()
        w.engine_channel.set_configuration_parameters(time_scale=self.time_scale)
        w.parameters_channel.set_float_parameter(TARGET_PARAMETER, self._target_value())
        w.parameters_channel.set_float_parameter(SEED_PARAMETER, float(w.seed % SEED_MODULUS))
        self._queue_start(w)  # a build relaunched during a reset still starts where asked
        channels = [w.engine_channel, w.parameters_channel, w.outcome_channel]
        where = "the editor" if self.file_name is None else self.file_name
        try:
            if self.file_name is None:
                log.warning("waiting for the Unity editor on port %d: press Play",
                            self.base_port)
                w.worker_id = 0
                w.env = UnityEnvironment(None, worker_id=0, base_port=self.base_port,
                                         seed=w.seed, timeout_wait=self.timeout_wait,
                                         side_channels=channels)
            else:
                w.env = self._launch_build(UnityEnvironment, w, channels)
        except UnityException as e:
            raise EngineError(f"could not connect to {where} "
                              f"(port {self.base_port + w.worker_id}): {_one_line(e)}") from None

    def _launch_build(self, unity_environment: type, w: _Worker, channels: list[Any]) -> Any:
        base = self
        lock = contextlib.ExitStack()
        if self.fixed_worker_id is None:  # pick a free port, holding the lock until bound
            lock.enter_context(_port_lock())
            w.worker_id = free_worker_ids(1, self.base_port, start=w.worker_id)[0]
        else:
            w.worker_id = self.fixed_worker_id + w.index

        class _Environment(unity_environment):  # type: ignore[misc, valid-type]
            def _get_communicator(self, worker_id: int, base_port: int,
                                  timeout_wait: int) -> Any:
                try:
                    return super()._get_communicator(worker_id, base_port, timeout_wait)
                finally:
                    lock.close()  # our server now holds the port

        try:
            return _Environment(base.file_name, worker_id=w.worker_id, base_port=base.base_port,
                                seed=w.seed, no_graphics=base.no_graphics,
                                timeout_wait=base.timeout_wait,
                                additional_args=base.additional_args, side_channels=channels,
                                log_folder=base.log_folder)
        finally:
            lock.close()

    def _shutdown(self, w: _Worker, kill: bool) -> None:
        """Close worker `w`: politely (quit message, wait for the build), or kill it at once."""
        env, w.env = w.env, None
        if env is None:
            return
        process = getattr(env, "_process", None)  # mlagents keeps the build's Popen here
        try:
            if kill and process is not None:
                process.kill()
            env._close(0 if kill else None)  # close() refuses a link already marked dead
        except Exception as e:  # a half-dead link must not stop the rest from closing
            log.debug("closing worker %d: %s", w.index, e)
        if process is not None:
            with contextlib.suppress(Exception):
                process.wait(timeout=5)

    def _reset_worker(self, w: _Worker, reseed: bool) -> None:
        from mlagents_envs.exception import UnityException

        while True:
            try:
                if reseed:
                    w.parameters_channel.set_float_parameter(
                        SEED_PARAMETER, float(w.seed % SEED_MODULUS))
                w.env.reset()
                w.start = None
                self._adopt_agents(w)
                return
            except UnityException as e:
                self._restart(w, e)
                reseed = False  # the relaunch queued the seed already

    def _adopt_agents(self, w: _Worker) -> None:
        """After a reset: check the behaviour, give each agent a row, show first frames."""
        from mlagents_envs.exception import UnityException

        specs = w.env.behavior_specs
        names = [n for n in specs if n.split("?")[0] == BEHAVIOR_NAME]
        if not names:
            raise EngineError(f"the build declares no {BEHAVIOR_NAME!r} behaviour (it declares "
                              f"{sorted(specs)}); is it the jumppad island?")
        name = names[0]
        self._check_spec(specs[name])
        self.behavior_name = name
        decision, _ = w.env.get_steps(name)
        ids = [int(a) for a in decision.agent_id]
        if not w.rows:
            if len(ids) != self.per_worker:
                raise EngineError(f"worker {w.index} has {len(ids)} agents, expected "
                                  f"{self.per_worker} (num_envs {self.num_envs} over "
                                  f"{len(self._workers)} workers)")
            w.rows = list(range(w.index * self.per_worker, (w.index + 1) * self.per_worker))
        elif len(ids) != len(w.rows):
            raise UnityException(f"worker {w.index} came back with {len(ids)} agents, "
                                 f"not {len(w.rows)}")
        w.agent_ids = ids
        w.decision_ids = decision.agent_id
        frames = self._frames(decision.obs[0])
        for k, row in enumerate(w.rows):
            self._obs[row] = frames[k]
            self._start_row(row, w.outcome_channel.records.get(ids[k]))

    def _step_worker(self, w: _Worker, actions: np.ndarray,
                     resetting: np.ndarray) -> _StepResult:
        """Send this worker's actions, wait for its answer, move its rows along.

        If the build is lost, every row it served ends here (truncated, `lost`), with the last
        frame and state seen; the restarted build's first frames are in place for the next call.
        """
        from mlagents_envs.base_env import ActionTuple
        from mlagents_envs.exception import UnityException

        row_of = dict(zip(w.agent_ids, w.rows, strict=True))
        ordered = np.array([row_of[int(a)] for a in w.decision_ids], dtype=np.int64)
        chosen = actions[ordered].copy()
        chosen[resetting[ordered]] = 0  # a waiting successor idles through this exchange
        try:
            w.env.set_actions(self.behavior_name, ActionTuple(discrete=chosen.astype(np.int32)))
            w.env.step()
            return self._read_steps(w, resetting)
        except UnityException as e:
            lost = {row: _Ended(self._obs[row].copy(), self._state(row), lost=True)
                    for row in w.rows if not resetting[row]}
            self._restart(w, e)
            self._reset_worker(w, False)
            return _StepResult(rewards={}, ended=lost)

    def _read_steps(self, w: _Worker, resetting: np.ndarray) -> _StepResult:
        """Map one answer's terminal and decision steps onto the worker's rows."""
        from mlagents_envs.exception import UnityException

        decision, terminal = w.env.get_steps(self.behavior_name)
        records = w.outcome_channel.records
        row_of = dict(zip(w.agent_ids, w.rows, strict=True))
        result = _StepResult(rewards={}, ended={})
        if len(terminal):
            frames = self._frames(terminal.obs[0])
            for j, aid in enumerate(terminal.agent_id.tolist()):
                row = row_of.pop(aid, None)
                if row is None:  # an agent we never saw (e.g. ended during a reset)
                    continue
                final = w.outcome_channel.finals.pop(aid, None)
                running = records.pop(aid, None) if final is None else records.get(aid)
                self._update_row(row, final or running)
                if not resetting[row]:
                    result.rewards[row] = float(terminal.reward[j])
                    result.ended[row] = _Ended(frames[j], self._state(row),
                                               interrupted=bool(terminal.interrupted[j]))
        free = [row for row in w.rows if row not in row_of.values()]
        new_ids = [a for a in decision.agent_id.tolist() if a not in row_of]
        if len(new_ids) != len(free):
            raise UnityException(f"worker {w.index}: {len(new_ids)} new agents for "
                                 f"{len(free)} ended episodes; every island agent must ask "
                                 "for a decision every step (DecisionRequester period 1)")
        row_of.update(zip(new_ids, free, strict=True))
        frames = self._frames(decision.obs[0])
        for j, aid in enumerate(decision.agent_id.tolist()):
            row = row_of[aid]
            self._obs[row] = frames[j]
            if row in free:
                self._start_row(row, records.get(aid))
            else:
                self._update_row(row, records.get(aid))
                if not resetting[row]:
                    result.rewards[row] = float(decision.reward[j])
        by_row = {row: aid for aid, row in row_of.items()}
        w.agent_ids = [by_row[row] for row in w.rows]
        w.decision_ids = decision.agent_id
        for aid in [a for a in records if a not in row_of]:
            del records[aid]
        w.outcome_channel.finals.clear()
        return result

    def _restart(self, w: _Worker, error: Exception) -> None:
        """Replace a crashed or silent build; raise EngineError when that is not possible."""
        from mlagents_envs.exception import UnityException

        if self.file_name is None:
            self._shutdown(w, True)
            raise EngineError(f"the Unity editor stopped answering ({_one_line(error)}); "
                              "press Play again and rerun") from None
        while True:
            if w.restarts >= self.max_restarts:
                self._shutdown(w, True)
                raise EngineError(f"worker {w.index} failed {w.restarts + 1} times, last: "
                                  f"{_one_line(error)}") from None
            w.restarts += 1
            self.restarts += 1
            log.warning("unity worker %d (port %d) failed: %s; restarting it (%d/%d); its "
                        "episode in flight is reported truncated", w.index,
                        self.base_port + w.worker_id, _one_line(error), w.restarts,
                        self.max_restarts)
            self._shutdown(w, True)
            w.seed = self._reset_seed + w.index + 7919 * w.restarts
            try:
                self._launch(w)
                return
            except (EngineError, UnityException) as e:
                error = e
