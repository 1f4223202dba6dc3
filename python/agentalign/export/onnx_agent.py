"""`OnnxAgent`: a personality driven the way Unity's ML-Agents drives it, an actor of the one
rollout loop.

NCHW float frames in 0..1, an all-zero memory at the first decision of every episode,
`recurrent_out` fed back as the next `recurrent_in`, sampled actions (`discrete_actions`, drawn by
the graph's own Multinomial, as in Unity) unless deterministic inference is asked for.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from agentalign.errors import UserError
from agentalign.export.contract import constant_value, require_valid
from agentalign.export.onnx import (
    ACTION_MASKS,
    DETERMINISTIC_ACTIONS,
    DISCRETE_ACTIONS,
    MEMORY_SIZE,
    OBS,
    RECURRENT_IN,
    RECURRENT_OUT,
)
from agentalign.spec import ACTION_BRANCHES


class PersonalityError(UserError):
    """A personality name, target, folder or file that cannot be used."""


class OnnxAgent:
    """A batch of agents played by one ONNX personality through onnxruntime.

    `seed` seeds onnxruntime's random ops (the graph's Multinomial) for reproducible sampled
    actions; it is process-wide in onnxruntime, so it is set right before the session is made.
    """

    def __init__(self, model: bytes | str | Path, num_agents: int, *, seed: int | None = None,
                 deterministic: bool = False, threads: int | None = None) -> None:
        import onnxruntime as ort

        proto = require_valid(model if isinstance(model, bytes) else Path(model))
        memory = constant_value(proto, MEMORY_SIZE)
        self.memory_size = int(memory.flat[0]) if memory is not None else 0
        if seed is not None:
            ort.set_seed(int(seed))
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        # Idle pool threads would spin while the island steps between decisions.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(proto.SerializeToString(), options,
                                                providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime's own error types
            raise PersonalityError(f"onnxruntime cannot load the model: "
                                   f"{str(e).strip().splitlines()[0]}") from None
        self.input_names = {i.name for i in self.session.get_inputs()}
        self.action_output = DETERMINISTIC_ACTIONS if deterministic else DISCRETE_ACTIONS
        self.memory = np.zeros((num_agents, 1, self.memory_size), np.float32)
        self.masks = np.ones((num_agents, sum(ACTION_BRANCHES)), np.float32)

    def begin(self, starting: np.ndarray, episodes: np.ndarray | None = None,
              seed: int | None = None) -> None:
        """Start new episodes in the `starting` rows (bool [N]): Unity zeroes an agent's
        memory then."""
        self.memory[starting] = 0.0

    def act(self, frames: np.ndarray, info: dict[str, Any] | None = None) -> np.ndarray:
        """Actions int64 [N, n_branches] for frames uint8 [N, H, W, 3] (the island's layout)."""
        feeds = {OBS: np.ascontiguousarray(frames.transpose(0, 3, 1, 2), dtype=np.float32)
                 / np.float32(255.0)}
        if ACTION_MASKS in self.input_names:
            feeds[ACTION_MASKS] = self.masks
        outputs = [self.action_output]
        if self.memory_size:
            feeds[RECURRENT_IN] = self.memory
            outputs.append(RECURRENT_OUT)
        results = self.session.run(outputs, feeds)
        if self.memory_size:
            self.memory = results[1]
        return results[0]
