"""Self-play: a league of the trained group's past snapshots playing the other group of a
two-group game (`league`: snapshots, opponent sampling, Elo, PFSP), and the Lightning callback
the algorithm returns to drive it between iterations (`callback`). A feature composed into
MAPPO/IPPO/PPO (`algo.league`), not a subclass of them."""
