"""Many runs: `sweep` (`python -m ca12.fit -m`, every combination of comma lists, on this
machine, Ray or SLURM) and `pbt` (population-based training, `python -m ca12.pbt`). Each member
is an ordinary run trained through `ca12.run.train`."""
