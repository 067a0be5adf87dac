"""A small scripted game for component tests: known observations, rewards and episode lengths.

Observation: the step index within the episode (float32 vector of one). Rewards follow a fixed
script, `+1` at step 2 and `-1` at the last step by default, whatever the action; so every
return and segment boundary is known in closed form.
"""

import gymnasium as gym
import numpy as np

SCRIPTED_ID = "pgkeras-test/Scripted-v0"


class ScriptedEnv(gym.Env):
    metadata = {"render_modes": []}

    def __init__(self, episode_length: int = 5, reward_steps: dict | None = None):
        self.episode_length = episode_length
        self.reward_steps = {2: 1.0, episode_length - 1: -1.0} if reward_steps is None else reward_steps
        self.observation_space = gym.spaces.Box(0.0, float(episode_length), shape=(1,), dtype=np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self.t = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.array([0.0], np.float32), {}

    def step(self, action):
        assert self.action_space.contains(action)
        reward = self.reward_steps.get(self.t, 0.0)
        self.t += 1
        terminated = self.t >= self.episode_length
        return np.array([float(self.t)], np.float32), reward, terminated, False, {}


if SCRIPTED_ID not in gym.registry:
    gym.register(SCRIPTED_ID, entry_point=ScriptedEnv)
