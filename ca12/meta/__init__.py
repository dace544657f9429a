"""Meta-learning: MAML's meta-gradient with torch.func (`ca12.meta.meta_gradient`) and the task families
it adapts to, as batched torch simulators (`ca12.meta.tasks`); `--algo maml` trains with them."""

from ca12.meta.meta_gradient import MetaGradient, adapt, inner_step, meta_gradient
from ca12.meta.tasks import Navigation, Opponent, episode_returns, rollout

__all__ = ["MetaGradient", "Navigation", "Opponent", "adapt", "episode_returns", "inner_step", "meta_gradient", "rollout"]
