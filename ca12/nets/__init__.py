"""Networks: actors, critics and Q-networks built from an agent group's specs by one builder
(ca12/nets/builder.py, composed by conf/model/); communication modules join them here."""

from ca12.nets.policies import make_actor, make_critic

__all__ = ["make_actor", "make_critic"]
