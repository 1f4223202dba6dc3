"""The reward model: the policy's trunk (CNN per frame + previous-action embedding + causal
transformer) with a scalar head, scoring a whole trajectory from its pixels and actions.

How a trajectory fits the context. An episode runs up to 100 decisions; the trunk sees
`context` tokens (K = 16 for tiny). A trajectory is shown as its last K decisions (all of them
when it is shorter), each frame with the action taken just before it (the "no previous action"
index at step 0): exactly the window of consecutive steps the policy was pre-trained on, so the
agent encoder sees what it knows. The score is read from the last token, which attends to all
the others. Why the end: the designer's preference is about where a run goes and ends ("to the
left pad"), and the last 1.6 s show which pad, or which edge, the agent is heading into.
Measured on the study's labels (agent encoder, frozen CNN, 50 labels, seed 0): K frames evenly
spaced over the whole episode (first and last included) gave 68-71% held-out accuracy, the
last K 73%.
Evenly spaced frames are out of distribution for a trunk trained on consecutive steps; scoring
every window of an episode and averaging would cost ~7 windows per episode, most of which do
not show how the run ends.

Each token also carries a learned embedding of its decision index in the episode (zero at
init, so an agent-encoder init starts as the policy): the last token's index is how long the
run took, which the labeller uses to order two runs to the same pad and which the last K frames
alone do not show. It is part of the trajectory itself (its frame count), not ground truth.
The run's length (decisions) also reaches the score directly, through one learned weight
(`length_weight`, zero at init): the labeller orders two runs that end the same way by length,
and through the transformer alone the model read it poorly (72% right on pairs of runs to the
same pad that differ by 1-2 decisions, 85% at 6-10; with the direct path 79% / 95%, held-out
accuracy 92.7% -> 94.9% at 1,000 labels, target left, seed 0).

The episode summary (opt-in, `summary_stride` N > 0 in configs/reward.yaml; 0 = the model above,
bit for bit). The last K decisions cannot show what a run did 40 decisions before its end ("pass
by the campfire, then end on the middle pad"). With N, the frames at steps 0, N, 2N, ... and the
last (26 at N = 4 for a 100-step run, padding masked) also go through the same CNN, then
LayerNorm, Linear(n_embd, 16) and a max over time: 16 "was X ever seen" detectors, order-free,
so a landmark counts wherever the run passed it; Linear(16, 1), zero at init (an agent-encoder
init starts as the model without), adds their score, in units of 0.1 (`SUMMARY_UNIT`; in whole
units its part stayed 0.2 wide (std) against scores 4.3 wide, and the pool accuracy below moved
79.7 -> 80.1% only). 16: a few landmarks and pads to detect with room to spare, 2k parameters,
little to overfit on 300 labels. N = 4 (every 2 m at 5 m/s): a pass within a landmark's radius +
1 m lasts up to ~10 decisions. The stride is saved in the checkpoint's meta (`checkpoint_meta`),
so `load_reward_model`, and through it the alignment stages, rebuild the same model (meta
without it: 0). Measured (agent init, N = 4 against 0, 2 threads), on the studio's 300 labels
for "campfire-middle": held-out accuracy 75.0 -> 83.8% (68 pairs; seed 1: 75.0 -> 77.9%) and
79.7 -> 83.9% on the 124k other pool pairs the scripted designer orders (seed 1: 80.4 -> 83.7%),
but not on those that only the campfire pass orders (same outcome: 69.5 -> 69.3%, seed 1 70.5 ->
63.3%): 17 of the 300 labels isolate the pass. Trained on 1,000 such pairs it does see it: 77.6
-> 89.3% on pairs of runs it never saw. On the pads (1,000 labels, seed 0) 94.9 / 96.8 / 94.5%
-> 95.0 / 96.0 / 93.6% (left / middle / right; same-pad pairs 2-4 points lower), and a step
costs 1.8x the time and the run 2.3x the memory: off by default.

How many detectors (`summary_width`, default 16; saved in the meta, absent = 16). With 0 there
is no learned bottleneck: each of the CNN's n_embd channels, LayerNorm'd, is its own detector
(its largest value over the episode), and Linear(n_embd, 1), zero at init, scores them. Why:
in two studio campfire-middle models (seeds 0 and 2, 200 labels each, 2026-12-06) the 16
detectors put 0.9 and 0.4 points between the pool's satisfying runs and its direct runs to the
middle pad, of 3.2 and 2.9 for the whole score (the rest from the last-K path, which RL can
match with a direct run); width 0 on seed 2's same labels: 2.7 of 4.8 (held-out accuracy 79.2%
both). On labels with fewer pairs that show the pass (4 against 9) it rated the direct runs
higher, as 16 did. Not the default: no studio run has yet shown it better
end to end (docs/results.md, "The studio").

Inputs are frames, actions and decision indices only: no positions or outcomes go in (the
labeller alone reads those). Parameter names match `Policy`'s (cnn.*, action_emb.*, blocks.*,
ln_f.*), so a pre-trained policy's trunk loads as is ("agent encoder" init); the action head is
not used.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from torch import Tensor

from agentalign.errors import UserError
from agentalign.models.checkpoint import (
    CheckpointError,
    config_from_info,
    load_exactly,
    load_weights,
)
from agentalign.models.policy import Policy, PolicyConfig
from agentalign.spec import MAX_DECISIONS

KIND = "reward"
SUMMARY_WIDTH = 16  # learned "was X ever seen" detectors of the episode summary (docstring); also
# what a checkpoint from before the `summary_width` key holds
SUMMARY_UNIT = 0.1  # the summary's score is per 0.1, so Adam moves it 10x faster (as
# LENGTH_UNIT; in whole units it learnt too slowly: module docstring)
LENGTH_UNIT = 0.1  # `length_weight` is per 0.1 decision, so Adam's steps move the score per
# decision ~10x faster than the other weights (measured: per-decision units learnt too slowly)
TRUNK = ("cnn.", "action_emb.", "blocks.", "ln_f.")


class RewardModel(nn.Module):
    """Frames, previous actions and a mask in (and, with `summary_stride`, the episode's summary
    frames); one score per trajectory out."""

    def __init__(self, config: PolicyConfig, summary_stride: int = 0,
                 summary_width: int = SUMMARY_WIDTH) -> None:
        super().__init__()
        if summary_stride < 0:
            raise ValueError(f"summary_stride must be >= 0, got {summary_stride}")
        if summary_width < 0:
            raise ValueError(f"summary_width must be >= 0, got {summary_width}")
        self.config, self.summary_stride = config, summary_stride
        self.summary_width = summary_width if summary_stride else 0
        policy = Policy(config)  # borrow its modules, so names and inits are the policy's
        self.cnn, self.action_emb, self.drop = policy.cnn, policy.action_emb, policy.drop
        self.blocks, self.ln_f = policy.blocks, policy.ln_f
        self.register_buffer("rope_cos", policy.rope_cos, persistent=False)
        self.register_buffer("rope_sin", policy.rope_sin, persistent=False)
        self.time_emb = nn.Embedding(MAX_DECISIONS, config.n_embd)  # decision index in the run
        nn.init.zeros_(self.time_emb.weight)
        self.length_weight = nn.Parameter(torch.zeros(1))  # score per LENGTH_UNIT decisions
        self.score = nn.Linear(config.n_embd, 1)
        nn.init.normal_(self.score.weight, std=0.02)
        nn.init.zeros_(self.score.bias)
        if summary_stride:  # made last: every other init draws as without the summary
            self.summary_norm = nn.LayerNorm(config.n_embd)
            detectors = self.summary_width or config.n_embd
            if self.summary_width:  # learned detectors; 0: each CNN channel is one
                self.summary_in: nn.Module = nn.Linear(config.n_embd, self.summary_width)
                nn.init.normal_(self.summary_in.weight, std=0.02)
                nn.init.zeros_(self.summary_in.bias)
            else:
                self.summary_in = nn.Identity()
            self.summary_out = nn.Linear(detectors, 1)  # zero: starts as the model without
            nn.init.zeros_(self.summary_out.weight)
            nn.init.zeros_(self.summary_out.bias)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(self, frames: Tensor, prev_actions: Tensor, mask: Tensor, steps: Tensor,
                summary_frames: Tensor | None = None, summary_mask: Tensor | None = None
                ) -> Tensor:
        """frames uint8 [B, T, H, W, 3], prev_actions long [B, T, n_branches], mask bool [B, T]
        (real steps first, padding after; T <= context), steps long [B, T] (each frame's decision
        index in its episode) -> float [B]: the last real token's score. With `summary_stride`,
        also summary_frames uint8 [B, S, H, W, 3] and summary_mask bool [B, S] (`fit_trajectory`
        makes them; real frames first, padding after), whose "ever seen" score is added."""
        Policy._check(self, frames, prev_actions)  # type: ignore[arg-type]  # same checks
        _check_mask(mask, frames, "mask")
        self._check_summary(summary_frames, summary_mask)
        if summary_frames is None:
            return self.forward_features(self.encode_frames(frames), prev_actions, mask, steps)
        _check_mask(summary_mask, summary_frames, "summary_mask")
        if summary_frames.dtype != torch.uint8 or summary_frames.shape[2:] != frames.shape[2:]:
            raise ValueError(f"summary_frames must be uint8 [B, S, {list(frames.shape[2:])}], "
                             f"got {summary_frames.dtype} {list(summary_frames.shape)}")
        # One CNN call for the window and the real summary frames only: a batch's summaries are
        # padded to a 100-step episode's, and its episodes are ~60 steps on average.
        B, T = frames.shape[:2]
        both = self._cnn(torch.cat([frames.flatten(0, 1), summary_frames[summary_mask]]))
        summary = both.new_zeros(*summary_mask.shape, both.shape[-1])
        summary[summary_mask] = both[B * T:]
        return self.forward_features(both[:B * T].view(B, T, -1), prev_actions, mask, steps,
                                     summary, summary_mask)

    def encode_frames(self, frames: Tensor) -> Tensor:
        """uint8 [B, T, H, W, 3] -> CNN features [B, T, n_embd], frames independently."""
        B, T = frames.shape[:2]
        return self._cnn(frames.flatten(0, 1)).view(B, T, -1)

    def _cnn(self, frames: Tensor) -> Tensor:
        """uint8 [N, H, W, 3] -> CNN features [N, n_embd]."""
        return self.cnn(frames.to(self.rope_cos.dtype).div_(255.0).permute(0, 3, 1, 2))

    def forward_features(self, features: Tensor, prev_actions: Tensor, mask: Tensor,
                         steps: Tensor, summary_features: Tensor | None = None,
                         summary_mask: Tensor | None = None) -> Tensor:
        """The rest of `forward`, from CNN features [B, T, n_embd] (cached when the CNN is
        frozen): add the previous actions' and decision indices' embeddings, run the
        transformer, score; add the summary's score from its CNN features [B, S, n_embd]."""
        self._check_summary(summary_features, summary_mask)
        lengths = mask.sum(1)
        if (lengths == 0).any():
            raise ValueError("every trajectory needs at least one real step")
        if steps.shape != mask.shape or steps.dtype != torch.long:
            raise ValueError(f"steps must be long {list(mask.shape)}, got {steps.dtype} "
                             f"{list(steps.shape)}")
        B, T = features.shape[:2]
        tokens = features + sum(emb(prev_actions[..., i]) for i, emb in enumerate(self.action_emb))
        tokens = tokens + self.time_emb(steps.clamp(0, MAX_DECISIONS - 1))
        x, cos, sin = self.drop(tokens), self.rope_cos[:T], self.rope_sin[:T]
        for block in self.blocks:  # causal: padding after the real steps never reaches them
            x, _, _ = block(x, cos, sin)
        rows = torch.arange(B, device=x.device)
        last = x[rows, lengths - 1]
        run_length = (steps[rows, lengths - 1] + 1).to(last.dtype) / LENGTH_UNIT
        score = self.score(self.ln_f(last)).squeeze(-1) + self.length_weight * run_length
        if summary_features is None:
            return score
        assert summary_mask is not None  # _check_summary
        return score + self.summarise(summary_features, summary_mask)

    def summarise(self, features: Tensor, mask: Tensor) -> Tensor:
        """The summary's score [B] from its frames' CNN features [B, S, n_embd] and mask [B, S]:
        per detector, its largest response over the real frames ("was X ever seen")."""
        if (mask.sum(1) == 0).any():
            raise ValueError("every episode summary needs at least one real frame")
        detectors = self.summary_in(self.summary_norm(features))
        detectors = detectors.masked_fill(~mask[..., None], float("-inf")).amax(1)
        return self.summary_out(detectors).squeeze(-1) / SUMMARY_UNIT

    def _check_summary(self, summary: Tensor | None, mask: Tensor | None) -> None:
        if self.summary_stride and (summary is None or mask is None):
            raise ValueError(f"this reward model also reads the episode summary (every "
                             f"{self.summary_stride}th frame): pass summary frames and mask "
                             f"(fit_trajectory with summary_stride={self.summary_stride})")
        if not self.summary_stride and (summary is not None or mask is not None):
            raise ValueError("this reward model has no episode summary (summary_stride 0)")

    def configure_optimizer(self, weight_decay: float = 0.1, lr: float = 1e-4,
                            betas: tuple[float, float] = (0.9, 0.95)) -> torch.optim.AdamW:
        """AdamW that decays matrices, conv kernels and embeddings, not biases or norms."""
        return Policy.configure_optimizer(self, weight_decay, lr, betas)  # type: ignore[arg-type]


def _check_mask(mask: Tensor | None, frames: Tensor, name: str) -> None:
    if not isinstance(mask, Tensor) or mask.dtype != torch.bool or \
            tuple(mask.shape) != tuple(frames.shape[:2]):
        raise ValueError(f"{name} must be bool [B, T] = {list(frames.shape[:2])}, got "
                         f"{getattr(mask, 'dtype', None)} {list(getattr(mask, 'shape', []))}")


# --- trajectories in, fixed-size tensors out --------------------------------------------------


def subsample_steps(length: int, context: int) -> np.ndarray:
    """The steps of a `length`-step episode the model sees: its last `context` decisions (all
    of them when the episode is shorter)."""
    if length < 1:
        raise ValueError("an episode needs at least one step")
    return np.arange(max(0, length - context), length)


def summary_steps(length: int, stride: int) -> np.ndarray:
    """The steps of a `length`-step episode its summary shows: every `stride`-th decision from
    the first, and the last."""
    if length < 1 or stride < 1:
        raise ValueError(f"a summary needs an episode (got {length} steps) and a stride >= 1 "
                         f"(got {stride})")
    steps = np.arange(0, length, stride)
    return steps if steps[-1] == length - 1 else np.append(steps, length - 1)


def summary_size(stride: int) -> int:
    """S, the summary frames of the longest episode (shorter ones are padded to it)."""
    return len(summary_steps(MAX_DECISIONS, stride))


def fit_trajectory(frames: np.ndarray, actions: np.ndarray, config: PolicyConfig,
                   summary_stride: int = 0) -> dict[str, np.ndarray]:
    """One episode (frames uint8 [T, H, W, 3], actions [T, n_branches]: the action taken at each
    frame) -> frames [K, H, W, 3], prev_actions int64 [K, n_branches], mask bool [K], steps int64
    [K] (decision indices), zero-padded when T < K. A kept frame's previous action is the action
    taken at the step before it. With `summary_stride` N > 0, also summary_frames [S, H, W, 3]
    and summary_mask bool [S]: the frames at steps 0, N, 2N, ... and the last
    (`summary_steps`), zero-padded to `summary_size(N)`."""
    T, K = len(frames), config.context
    if len(actions) != T:
        raise ValueError(f"an episode needs one action per frame, got {T} frames and "
                         f"{len(actions)} actions")
    steps = subsample_steps(T, K)
    previous = np.empty((T, len(config.action_branches)), dtype=np.int64)
    previous[0] = config.action_branches  # the "no previous action" index
    previous[1:] = np.asarray(actions[:-1], dtype=np.int64)
    out_frames = np.zeros((K, *frames.shape[1:]), dtype=np.uint8)
    out_prev = np.zeros((K, len(config.action_branches)), dtype=np.int64)
    out_frames[:len(steps)] = frames[steps]
    out_prev[:len(steps)] = previous[steps]
    out_steps = np.zeros(K, dtype=np.int64)
    out_steps[:len(steps)] = steps
    fitted = {"frames": out_frames, "prev_actions": out_prev, "mask": np.arange(K) < len(steps),
              "steps": out_steps}
    if summary_stride:
        if T > MAX_DECISIONS:
            raise ValueError(f"an episode of {T} steps is longer than {MAX_DECISIONS}")
        kept, S = summary_steps(T, summary_stride), summary_size(summary_stride)
        fitted["summary_frames"] = np.zeros((S, *frames.shape[1:]), dtype=np.uint8)
        fitted["summary_frames"][:len(kept)] = frames[kept]
        fitted["summary_mask"] = np.arange(S) < len(kept)
    return fitted


def stack_fitted(items: list[dict[str, np.ndarray]]) -> dict[str, Tensor]:
    return {key: torch.from_numpy(np.stack([item[key] for item in items])) for key in items[0]}


@torch.no_grad()
def encode_fitted(model: RewardModel, frames: Tensor, batch_size: int = 256) -> Tensor:
    """CNN features [N, K, n_embd] of fitted trajectories' frames [N, K, H, W, 3] (on CPU)."""
    device = model.rope_cos.device
    return torch.cat([model.encode_frames(frames[i:i + batch_size].to(device)).cpu()
                      for i in range(0, len(frames), batch_size)])


@torch.no_grad()
def score_fitted(model: RewardModel, fitted: dict[str, Tensor], batch_size: int = 64
                 ) -> np.ndarray:
    """Scores of already-fitted trajectories (tensors with a leading trajectory axis)."""
    device = model.rope_cos.device
    was_training = model.training
    model.eval()
    scores = []
    for i in range(0, len(fitted["mask"]), batch_size):
        part = {k: v[i:i + batch_size].to(device) for k, v in fitted.items()}
        scores.append(model(part["frames"], part["prev_actions"], part["mask"], part["steps"],
                            part.get("summary_frames"), part.get("summary_mask")).float().cpu())
    model.train(was_training)
    return torch.cat(scores).numpy() if scores else np.zeros(0, dtype=np.float32)


def score_episodes(model: RewardModel, frames: list[np.ndarray], actions: list[np.ndarray],
                   batch_size: int = 64) -> np.ndarray:
    """Scores float [N] of N variable-length episodes (frames uint8 [T, H, W, 3], actions
    [T, n_branches], the action taken at each frame)."""
    if len(frames) != len(actions):
        raise ValueError(f"{len(frames)} frame arrays but {len(actions)} action arrays")
    if not frames:
        return np.zeros(0, dtype=np.float32)
    scores = []
    for i in range(0, len(frames), batch_size):
        fitted = [fit_trajectory(f, a, model.config, model.summary_stride)
                  for f, a in zip(frames[i:i + batch_size], actions[i:i + batch_size],
                                  strict=True)]
        scores.append(score_fitted(model, stack_fitted(fitted), batch_size))
    return np.concatenate(scores)


# --- checkpoints ----------------------------------------------------------------------------


def load_reward_model(path: str | Path, device: str | torch.device = "cpu",
                      config: PolicyConfig | None = None) -> tuple[RewardModel, dict[str, Any]]:
    """A RewardModel in eval mode and its checkpoint.json. Refuses checkpoints of another kind
    and, when `config` is given, a reward model of another policy config. The summary stride is
    read from the checkpoint's meta (`checkpoint_meta`; absent, as in checkpoints from before
    the summary: 0)."""
    weights, info = load_weights(path, kind=KIND)
    saved = config_from_info(info, path)
    if config is not None and saved != config:
        raise CheckpointError(f"checkpoint {path}: a reward model of the policy config "
                              f"{saved.to_dict()}, expected {config.to_dict()}")
    meta = info.get("meta") or {}
    stride = meta.get("summary_stride", 0)
    width = meta.get("summary_width", SUMMARY_WIDTH)  # absent: from before the key
    for key, value in (("summary_stride", stride), ("summary_width", width)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise CheckpointError(f"checkpoint {path}: bad {key} {value!r} in its meta")
    model = RewardModel(saved, stride, width)
    load_exactly(model, weights, path, f"{saved.name!r} reward model"
                 + (f" with a summary every {stride} steps" if stride else ""))
    return model.to(device).eval(), info


def checkpoint_meta(model: RewardModel) -> dict[str, Any]:
    """What a reward checkpoint's meta must hold, beside the policy config, to rebuild the
    model's architecture (`load_reward_model`)."""
    return {"summary_stride": model.summary_stride, "summary_width": model.summary_width}


# (frames per episode, actions per episode) -> one score per episode. Pixels and actions only.
RewardFn = Callable[[list[np.ndarray], list[np.ndarray]], np.ndarray]


@dataclass(frozen=True)
class RewardFunction:
    """What alignment optimises: scores of whole episodes from their pixels and actions, and
    its identity (a reward model's weights sha256), which enters the aligned run's identity."""

    score: RewardFn
    identity: str

    def __call__(self, frames: list[np.ndarray], actions: list[np.ndarray]) -> np.ndarray:
        scores = np.asarray(self.score(frames, actions), dtype=np.float64)
        if scores.shape != (len(frames),):
            raise ValueError(f"the reward function returned shape {scores.shape} for "
                             f"{len(frames)} episodes")
        return scores


def load_reward_function(path: str | Path, policy_config: PolicyConfig, target: str,
                         batch_size: int = 64) -> RewardFunction:
    """The reward model at `path` as a RewardFunction. Refuses a reward model of another policy
    config or one trained for another target."""
    model, info = load_reward_model(path, config=policy_config)
    trained_for = (info.get("meta") or {}).get("target")
    if trained_for is not None and trained_for != target:
        raise UserError(f"reward model {path} was trained for target {trained_for!r}, "
                        f"not {target!r}")
    return RewardFunction(ModelScore(model, batch_size), str(info.get("sha256")))


@dataclass(frozen=True, eq=False)
class ModelScore:
    """A reward model's episode scores: an object, not a closure, so that it pickles and worker
    processes (align's RL draws side by side) can be handed it."""

    model: RewardModel
    batch_size: int = 64

    def __call__(self, frames: list[np.ndarray], actions: list[np.ndarray]) -> np.ndarray:
        return np.asarray(score_episodes(self.model, frames, actions, self.batch_size),
                          dtype=np.float64)


def init_from_policy(model: RewardModel, policy_checkpoint_path: str | Path) -> dict[str, Any]:
    """Copy a policy checkpoint's trunk (cnn, action embeddings, blocks, final norm) into the
    reward model ("agent encoder" init); the score head and the summary keep their fresh init.
    Returns the policy checkpoint.json. Refuses a policy of another config."""
    weights, info = load_weights(policy_checkpoint_path, kind="policy")
    saved = config_from_info(info, policy_checkpoint_path)
    ours = {k: v for k, v in model.config.to_dict().items() if k != "dropout"}
    theirs = {k: v for k, v in saved.to_dict().items() if k != "dropout"}
    if ours != theirs:
        diff = ", ".join(f"{k}: {theirs[k]!r} vs {ours[k]!r}" for k in ours
                         if ours[k] != theirs.get(k))
        raise CheckpointError(f"checkpoint {policy_checkpoint_path}: a policy of another config "
                              f"than the reward model ({diff})")
    trunk = {k: v for k, v in weights.items() if k.startswith(TRUNK)}
    missing, unexpected = model.load_state_dict(trunk, strict=False)
    fresh = ("score.", "time_emb.", "length_weight", "summary_")  # the reward model's own
    if unexpected or [k for k in missing if not k.startswith(fresh)]:
        raise CheckpointError(f"checkpoint {policy_checkpoint_path}: trunk weights do not fit "
                              f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    return info


def bradley_terry_losses(r_chosen: Tensor, r_rejected: Tensor, target: Tensor | None = None
                         ) -> Tensor:
    """Per pair: binary cross-entropy of sigmoid(r_chosen - r_rejected) against `target` (1 when
    `chosen` was preferred, 0.5 for a tie: both scores pulled together). With target 1 (or
    None) it is -log sigmoid(r_chosen - r_rejected), bit for bit: the `(1 - t)` term adds 0."""
    margin = r_chosen - r_rejected
    if target is None:
        return -torch.nn.functional.logsigmoid(margin)
    t = target.to(margin.dtype)
    return -(t * torch.nn.functional.logsigmoid(margin)
             + (1 - t) * torch.nn.functional.logsigmoid(-margin))


def bradley_terry_loss(r_chosen: Tensor, r_rejected: Tensor, target: Tensor | None = None
                       ) -> Tensor:
    """`bradley_terry_losses`, averaged over pairs."""
    return bradley_terry_losses(r_chosen, r_rejected, target).mean()


def accuracy(scores: np.ndarray, first: np.ndarray, second: np.ndarray, choice: np.ndarray
             ) -> float:
    """Share of pairs whose preferred trajectory scores higher (an exact tie counts half)."""
    if len(choice) == 0:
        return math.nan
    margin = np.where(choice == 0, scores[first] - scores[second], scores[second] - scores[first])
    return float(np.mean((margin > 0) + 0.5 * (margin == 0)))
