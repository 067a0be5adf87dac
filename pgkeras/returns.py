"""Discounted returns and advantages. Pure numpy; knows nothing of Keras."""

from __future__ import annotations

from typing import Literal

import numpy as np

AdvantageMode = Literal["standardize", "standardize_per_episode", "center", "none"]
# Below this spread the returns carry no preference between actions; dividing by it would only
# amplify round-off into huge advantages (and 0/0 into NaN when every return is equal).
MIN_STD = 1e-8


def discounted_returns(
    rewards: np.ndarray,
    gamma: float,
    reset_on_reward: bool = True,
    episode_ends: np.ndarray | None = None,
) -> np.ndarray:
    """Discounted sum of future rewards at every step: G_t = r_t + gamma * G_{t+1}.

    Args:
        rewards: 1-D float array `(T,)`, the reward received after each step.
        gamma: discount in [0, 1].
        reset_on_reward: restart the sum at every non-zero reward, so that a step's return only
            counts rewards up to the end of its own point. Pong-specific (Karpathy's
            "reset the sum, since this was a game boundary"): each point is decided on its own.
        episode_ends: optional bool `(T,)`, True on the last step of an episode; the sum never
            crosses into the next episode.

    Returns:
        float32 array of the same shape as `rewards`.

    Raises:
        ValueError: if `rewards` is not 1-D or `gamma` is outside [0, 1].

    Example:
        >>> discounted_returns(np.array([0, 0, 1.0]), gamma=0.5).tolist()
        [0.25, 0.5, 1.0]
        >>> discounted_returns(np.array([0, 1.0, 0, -1.0]), gamma=0.5).tolist()  # two points
        [0.5, 1.0, -0.5, -1.0]
    """
    rewards = np.asarray(rewards, dtype=np.float64)
    if rewards.ndim != 1:
        raise ValueError(f"expected a 1-D array of rewards, got shape {rewards.shape}")
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"expected gamma in [0, 1], got {gamma}")
    ends = np.zeros(len(rewards), dtype=bool) if episode_ends is None else np.asarray(episode_ends, bool)
    if ends.shape != rewards.shape:
        raise ValueError(f"episode_ends has shape {ends.shape}, expected {rewards.shape} like rewards")
    if reset_on_reward:
        ends = ends | (rewards != 0)
    # A plain Python loop over floats: ~0.3 us a step, negligible beside collecting the step.
    returns = [0.0] * len(rewards)
    running = 0.0
    for t, (reward, end) in enumerate(zip(rewards.tolist()[::-1], ends.tolist()[::-1], strict=True)):
        if end:
            running = 0.0
        running = reward + gamma * running
        returns[t] = running
    return np.array(returns[::-1], dtype=np.float32)


def compute_advantages(
    returns: np.ndarray, mode: AdvantageMode = "standardize", segment_ids: np.ndarray | None = None
) -> np.ndarray:
    """Turns a batch's returns into the advantages that weight each sample's log-likelihood.

    Args:
        returns: float array `(T,)` of discounted returns.
        mode: "standardize" (subtract the mean, divide by the standard deviation),
            "standardize_per_episode" (the same within each episode, as pg-pong.py does),
            "center" (subtract the mean: the blog), or "none".
        segment_ids: int `(T,)`, the episode of each sample; needed by "standardize_per_episode".

    Returns:
        float32 array `(T,)`. A batch (or episode) whose returns are all equal gives zeros, never NaN.

    Example:
        >>> compute_advantages(np.array([1.0, 3.0]), "center").tolist()
        [-1.0, 1.0]
        >>> episodes = np.array([0, 0, 1, 1])
        >>> compute_advantages(np.array([1.0, 3.0, 5.0, 5.0]), "standardize_per_episode", episodes).tolist()
        [-1.0, 1.0, 0.0, 0.0]
    """
    returns = np.asarray(returns, dtype=np.float64)
    if mode == "none":
        return returns.astype(np.float32)
    if mode == "standardize_per_episode":
        if segment_ids is None:
            raise ValueError("advantage mode 'standardize_per_episode' needs the episode of each sample")
        counts = np.bincount(segment_ids).astype(np.float64)
        counts[counts == 0] = 1
        means = np.bincount(segment_ids, returns) / counts
        centred = returns - means[segment_ids]
        stds = np.sqrt(np.bincount(segment_ids, centred**2) / counts)[segment_ids]
        return np.where(stds > MIN_STD, centred / np.where(stds > MIN_STD, stds, 1), 0.0).astype(np.float32)
    if mode not in ("standardize", "center"):
        raise ValueError(
            f"advantage mode: got {mode!r}, expected 'standardize', 'standardize_per_episode', "
            "'center' or 'none'"
        )
    advantages = returns - returns.mean() if len(returns) else returns
    if mode == "standardize":
        std = advantages.std() if len(advantages) else 0.0
        advantages = advantages / std if std > MIN_STD else np.zeros_like(advantages)
    return advantages.astype(np.float32)


def gae_advantages(
    rewards: np.ndarray, values: np.ndarray, ends: np.ndarray, gamma: float, lam: float
) -> np.ndarray:
    """Generalised advantage estimates (Schulman et al. 2016) within stretches that end at `ends`.

    delta_t = r_t + gamma * V(s_{t+1}) - V(s_t), with V = 0 after the last step of a stretch (a
    decided point, a finished episode: nothing follows it in its return), and
    A_t = delta_t + gamma * lam * A_{t+1} within the stretch. lam = 1 gives G_t - V(s_t), the
    discounted return of `discounted_returns` minus the baseline; lam = 0 gives delta_t.

    Args:
        rewards: float `(T,)`, the reward after each step.
        values: float `(T,)`, V(s_t) of each step's observation.
        ends: bool `(T,)`, True on the last step of each stretch; the last step of the array must be one.
        gamma: discount in [0, 1].
        lam: lambda in [0, 1].

    Returns:
        float32 `(T,)`.

    Example:
        >>> ends = np.array([False, True])
        >>> gae_advantages(np.array([0, 1.0]), np.array([0.5, 0.5]), ends, gamma=1.0, lam=1.0).tolist()
        [0.5, 0.5]
    """
    rewards = np.asarray(rewards, np.float64)
    values = np.asarray(values, np.float64)
    ends = np.asarray(ends, bool)
    if not (rewards.shape == values.shape == ends.shape) or rewards.ndim != 1:
        raise ValueError(
            "rewards, values and ends must be 1-D of one length, "
            f"got {rewards.shape}, {values.shape}, {ends.shape}"
        )
    if len(ends) and not ends[-1]:
        raise ValueError("the last step must end its stretch: its return is not known yet")
    following = np.where(ends, 0.0, np.append(values[1:], 0.0))
    deltas = (rewards + gamma * following - values).tolist()
    stops = ends.tolist()
    decay = gamma * lam
    advantages = [0.0] * len(deltas)
    running = 0.0
    for t in range(len(deltas) - 1, -1, -1):
        if stops[t]:
            running = 0.0
        running = deltas[t] + decay * running
        advantages[t] = running
    return np.array(advantages, dtype=np.float32)


def clipped_sample_weights(advantages: np.ndarray, ratios: np.ndarray, clip_range: float) -> np.ndarray:
    """Sample weights that make the trick's loss follow PPO's clipped surrogate.

    PPO maximises (1/T) * sum_i min(r_i A_i, clip(r_i, 1 - eps, 1 + eps) A_i), with r_i the ratio
    pi(a_i | s_i) / pi_old(a_i | s_i). Where the minimum takes the clipped term its gradient is 0;
    elsewhere it is A_i * grad r_i = A_i * r_i * grad log pi(a_i | s_i). The weighted cross-entropy
    -(1/T) * sum_i w_i log pi(a_i | s_i) has the gradient -(1/T) * sum_i w_i grad log pi, so with
    w_i = A_i * r_i (0 where clipped), held fixed for one step, its gradient is minus the surrogate's
    at the current weights: one more step of the trick, with the importance ratio in the weight.
    With r = 1 (the first step on a batch) the weights are the advantages: REINFORCE.

    Args:
        advantages: float `(T,)`, the batch's advantages.
        ratios: float `(T,)`, each sampled action's probability now over its probability before
            the update.
        clip_range: PPO's epsilon (`train.clip_range`).

    Returns:
        float32 `(T,)`.

    Example:
        >>> advantages, ratios = np.array([1.0, -1.0, 1.0, -1.0]), np.array([1.5, 1.5, 0.5, 0.5])
        >>> clipped_sample_weights(advantages, ratios, 0.2).tolist()  # 0: moved far enough already
        [0.0, -1.5, 0.5, 0.0]
    """
    advantages = np.asarray(advantages, np.float64)
    ratios = np.asarray(ratios, np.float64)
    clipped = ((advantages > 0) & (ratios > 1 + clip_range)) | ((advantages < 0) & (ratios < 1 - clip_range))
    return np.where(clipped, 0.0, advantages * ratios).astype(np.float32)
