"""The policy: shapes, causality, KV-cached stepping == full-context forward, per-row resets,
configs and parameter counts, input errors, and that it learns."""

from __future__ import annotations

import json

import pytest
import torch

from agentalign.models.policy import (
    CONFIGS,
    Policy,
    PolicyConfig,
    action_loss,
    get_config,
    no_previous_action,
    sample,
    window_start,
)
from agentalign.spec import ACTION_BRANCHES

TOL = 1e-5


def make_policy(context: int = 6, **overrides: object) -> Policy:
    """A small, fast policy: 32x32 frames, 2 layers, 32 wide; deterministic weights."""
    torch.manual_seed(0)
    config = get_config("tiny", obs_height=32, obs_width=32, n_layer=2, n_head=2, n_embd=32,
                        context=context, **overrides)
    return Policy(config).eval()


def episode(policy: Policy, batch: int, steps: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Random frames [B, T, H, W, 3] and the previous actions of a fresh episode [B, T, 2]."""
    g = torch.Generator().manual_seed(seed)
    c = policy.config
    frames = torch.randint(0, 256, (batch, steps, c.obs_height, c.obs_width, 3),
                           dtype=torch.uint8, generator=g)
    actions = torch.stack([torch.randint(0, n, (batch, steps), generator=g)
                           for n in c.action_branches], dim=-1)
    prev_actions = torch.cat([no_previous_action(batch)[:, None], actions[:, :-1]], dim=1)
    return frames, prev_actions, actions


def max_diff(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    return max((x - y).abs().max().item() for x, y in zip(a, b, strict=True))


def test_shapes() -> None:
    policy = make_policy()
    frames, prev_actions, _ = episode(policy, batch=3, steps=5)
    logits = policy(frames, prev_actions)
    assert [tuple(x.shape) for x in logits] == [(3, 5, n) for n in ACTION_BRANCHES]
    assert policy.encode_frames(frames).shape == (3, 5, 32)
    step_logits, cache = policy.step(frames[:, 0], prev_actions[:, 0], policy.new_cache(3))
    assert [tuple(x.shape) for x in step_logits] == [(3, n) for n in ACTION_BRANCHES]
    assert cache.lengths.tolist() == [1, 1, 1]
    assert sample(step_logits).shape == (3, 2) and sample(step_logits).dtype == torch.long


def test_causal_mask() -> None:
    policy = make_policy()
    frames, prev_actions, _ = episode(policy, batch=2, steps=6)
    before = policy(frames, prev_actions)
    frames[:, 3] = 255 - frames[:, 3]
    after = policy(frames, prev_actions)
    for x, y in zip(before, after, strict=True):
        assert torch.equal(x[:, :3], y[:, :3])  # the past cannot see the future
        assert (x[:, 3] - y[:, 3]).abs().max() > 1e-4  # and the present does see itself


def test_cached_step_equals_forward_within_context() -> None:
    policy = make_policy(context=8)
    frames, prev_actions, _ = episode(policy, batch=3, steps=7)
    full = policy(frames, prev_actions)
    cache = policy.new_cache(3)
    for t in range(7):
        logits, cache = policy.step(frames[:, t], prev_actions[:, t], cache)
        assert max_diff(logits, [x[:, t] for x in full]) <= TOL


@pytest.mark.parametrize("context", [6, 7])
def test_cached_step_equals_forward_past_context(context: int) -> None:
    """Past the context the cache slides; at decision t it equals a forward over steps s..t."""
    policy = make_policy(context=context)
    steps = 3 * context + 2
    frames, prev_actions, _ = episode(policy, batch=2, steps=steps, seed=1)
    cache = policy.new_cache(2)
    for t in range(steps):
        logits, cache = policy.step(frames[:, t], prev_actions[:, t], cache)
        s = window_start(t, context)
        assert cache.lengths.tolist() == [t - s + 1] * 2
        reference = policy(frames[:, s : t + 1], prev_actions[:, s : t + 1])
        assert max_diff(logits, [x[:, -1] for x in reference]) <= TOL, f"step {t}"


def test_window_start_rule() -> None:
    # context 6 keeps the newest 3 tokens when full: windows 0..5, then 3..8, 6..11, 9..
    assert [window_start(t, 6) for t in range(13)] == [0] * 6 + [3] * 3 + [6] * 3 + [9]
    # context 7 keeps 3, dropping 4 at a time
    assert [window_start(t, 7) for t in range(12)] == [0] * 7 + [4] * 4 + [8]


def test_reset_rows_only_restarts_those_rows() -> None:
    """Envs autoreset independently: a reset row acts like a fresh cache, the others carry on."""
    policy = make_policy(context=6)
    frames, prev_actions, _ = episode(policy, batch=3, steps=17, seed=2)
    new_frames, new_prev, _ = episode(policy, batch=1, steps=8, seed=3)
    restart = torch.tensor([False, True, False])

    cache, untouched = policy.new_cache(3), policy.new_cache(3)
    for t in range(9):  # past a slide, so rows hold re-encoded state
        policy.step(frames[:, t], prev_actions[:, t], cache)
        policy.step(frames[:, t], prev_actions[:, t], untouched)
    cache.reset_rows(restart)
    empty = policy.new_cache(3)
    assert cache.lengths.tolist() == [6, 0, 6]
    assert torch.equal(cache.keys[:, 1], empty.keys[:, 1])
    assert torch.equal(cache.tokens[1], empty.tokens[1])

    fresh = policy.new_cache(1)
    for i, t in enumerate(range(9, 17)):  # rows slide at different decisions from here on
        step_frames, step_prev = frames[:, t].clone(), prev_actions[:, t].clone()
        step_frames[1], step_prev[1] = new_frames[0, i], new_prev[0, i]
        logits, _ = policy.step(step_frames, step_prev, cache)
        carry_on, _ = policy.step(frames[:, t], prev_actions[:, t], untouched)
        restarted, _ = policy.step(new_frames[:, i], new_prev[:, i], fresh)
        assert max_diff([x[[0, 2]] for x in logits], [x[[0, 2]] for x in carry_on]) <= TOL
        assert max_diff([x[1:2] for x in logits], restarted) <= TOL


def test_paper_config_size_without_allocating() -> None:
    with torch.device("meta"):
        policy = Policy(get_config("paper"))
    assert all(p.is_meta for p in policy.parameters())
    assert abs(policy.num_params() - 103e6) / 103e6 < 0.05, policy.summary()
    assert policy.config.obs_height == 128


def test_tiny_param_count_printed() -> None:
    policy = Policy(get_config())
    summary = policy.summary()
    print(summary)
    assert policy.config.name == "tiny" and policy.config.context == 16
    assert f"{policy.num_params() / 1e6:.2f}M parameters" in summary
    assert policy.num_params() < 2_000_000
    blocks = sum(p.numel() for p in policy.blocks.parameters())
    assert policy.flops_per_frame() > 6 * blocks  # at least 6 FLOPs per weight, per frame


def test_configs_and_json_round_trip() -> None:
    assert set(CONFIGS) >= {"tiny", "small", "paper"}
    with pytest.raises(ValueError, match="valid names: tiny, small, paper"):
        get_config("huge")
    with pytest.raises(ValueError, match="bad override"):
        get_config("tiny", n_layers=3)
    config = get_config("small", context=12)
    assert config.context == 12 and config.name == "small"
    assert PolicyConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(ValueError, match="unknown PolicyConfig fields"):
        PolicyConfig.from_dict({**config.to_dict(), "wat": 1})
    with pytest.raises(ValueError, match="even-sized heads"):
        get_config("tiny", n_head=3)


def test_bad_inputs_raise_clear_errors() -> None:
    policy = make_policy(context=6)
    frames, prev_actions, _ = episode(policy, batch=2, steps=7)
    ok_frames, ok_prev = frames[:, :4], prev_actions[:, :4]
    with pytest.raises(ValueError, match="uint8"):
        policy(ok_frames.float(), ok_prev)
    with pytest.raises(ValueError, match="int64"):
        policy(ok_frames, ok_prev.int())
    with pytest.raises(ValueError, match="exceeds context 6"):
        policy(frames, prev_actions)
    with pytest.raises(ValueError, match="n_branches"):
        policy(ok_frames, torch.zeros(2, 4, 3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"frames must be \[B, T, 32, 32, 3\]"):
        policy(torch.zeros(2, 4, 64, 64, 3, dtype=torch.uint8), ok_prev)
    with pytest.raises(ValueError, match="step takes frames"):
        policy.step(ok_frames, ok_prev, policy.new_cache(2))
    with pytest.raises(ValueError, match="cache of 3 rows"):
        policy.step(frames[:, 0], prev_actions[:, 0], policy.new_cache(3))
    with pytest.raises(ValueError, match="done mask"):
        policy.new_cache(2).reset_rows(torch.tensor([True]))


def test_sample() -> None:
    logits = [torch.tensor([[0.0, 9.0, 0.0], [5.0, 0.0, 0.0]]), torch.tensor([[0.0, 30.0]] * 2)]
    assert sample(logits, greedy=True).tolist() == [[1, 1], [0, 1]]
    flat = [torch.zeros(64, 9), torch.zeros(64, 3)]
    a = sample(flat, generator=torch.Generator().manual_seed(7))
    b = sample(flat, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a, b) and a.shape == (64, 2) and len(a[:, 0].unique()) > 1
    assert (a[:, 0] < 9).all() and (a[:, 1] < 3).all()


def test_optimiser_lowers_imitation_loss() -> None:
    policy = make_policy(context=6).train()
    frames, prev_actions, actions = episode(policy, batch=4, steps=6, seed=4)
    optimizer = policy.configure_optimizer(weight_decay=0.1, lr=3e-3, betas=(0.9, 0.95))
    decayed, plain = optimizer.param_groups
    assert all(p.dim() >= 2 for p in decayed["params"]) and decayed["weight_decay"] == 0.1
    assert all(p.dim() < 2 for p in plain["params"]) and plain["weight_decay"] == 0.0
    losses = []
    for _ in range(30):
        loss = action_loss(policy(frames, prev_actions), actions)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses
