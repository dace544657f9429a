"""Networks: actors and critics built from env specs (communication modules join them here)."""

from ca12.nets.policies import make_actor, make_critic

__all__ = ["make_actor", "make_critic"]
