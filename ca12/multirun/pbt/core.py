"""The core of population-based training (Jaderberg et al. 2017, "Population Based Training of
Neural Networks", algorithm 1), independent of what a member is or where it trains.

A population of members trains in parallel; each has weights theta and hyperparameters h. When
members are *ready* (here: synchronously, after every interval of training, the paper's
appendix A.1 variant that Ray Tune calls `synch=True`), every member is scored and:

- **exploit** (truncation selection, section 3.2): the members ranked in the bottom `quantile`
  of the population each copy the weights *and* hyperparameters of a member drawn uniformly
  from the top `quantile` (its whole checkpoint: weights and optimiser state);
- **explore**: a member that copied perturbs the copied hyperparameters (the "perturb" variant:
  each continuous value multiplied by a factor drawn from `perturbation_factors`; an integer
  rounded; a categorical value moved to a neighbour; with `resample_probability` a value is
  drawn from the prior instead: Ray Tune's rules, so both backends explore alike).

Members in neither set keep training untouched. `pbt_step` returns the decisions; the caller
copies what it holds (checkpoints of ca12 runs, or the toy problem's theta). Written here rather
than taken from Ray Tune because Tune's scheduler only runs inside Tune's trial runner; the
local backend and the toy problem need the selection and perturbation as plain functions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from ca12.errors import UsageError

PRIORS = ("uniform", "loguniform", "int", "choice")

# explore(hyperparameters, rng) -> (new hyperparameters, {key: what was done})
Explore = Callable[[dict, np.random.Generator], tuple[dict, dict]]


@dataclass(frozen=True)
class Hyperparameter:
    """One searched config key and its prior.

    `KEY=uniform:LOW:HIGH` and `KEY=loguniform:LOW:HIGH` are real values, `KEY=int:LOW:HIGH` an
    integer in [LOW, HIGH], `KEY=choice:A,B,C` one of the listed values (kept as the text given,
    passed to the config as written). Perturbed values are clipped to [LOW, HIGH].
    """

    key: str
    prior: str
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str) -> "Hyperparameter":
        """`KEY=PRIOR:ARGS` (the CLI's `--search`), checked for form and range; one-line errors."""
        usage = "expected KEY=uniform:LOW:HIGH, KEY=loguniform:LOW:HIGH, KEY=int:LOW:HIGH or KEY=choice:A,B,..."
        key, sep, spec = text.partition("=")
        prior, _, args = spec.partition(":")
        key = key.strip()
        if not sep or not key or prior not in PRIORS or not args:
            raise UsageError(f"--search '{text}': {usage}")
        if prior == "choice":
            choices = tuple(c.strip() for c in args.split(","))
            if len(choices) < 2 or "" in choices or len(set(choices)) < len(choices):
                raise UsageError(f"--search '{text}': choice needs at least two distinct values, e.g. {key}=choice:a,b")
            return cls(key, prior, choices=choices)
        bounds = args.split(":")
        try:
            low, high = (int(b) if prior == "int" else float(b) for b in bounds)
        except ValueError:
            kind = "integers" if prior == "int" else "numbers"
            raise UsageError(f"--search '{text}': {prior} takes two {kind} LOW:HIGH, got '{args}'") from None
        if not (math.isfinite(low) and math.isfinite(high)) or not low < high:
            raise UsageError(f"--search '{text}': needs LOW < HIGH, got {low} and {high}")
        if prior == "loguniform" and low <= 0:
            raise UsageError(f"--search '{text}': loguniform needs LOW > 0, got {low}")
        return cls(key, prior, low, high)

    def sample(self, rng: np.random.Generator) -> Any:
        """A value drawn from the prior."""
        if self.prior == "choice":
            return self.choices[int(rng.integers(len(self.choices)))]
        if self.prior == "int":
            return int(rng.integers(self.low, self.high + 1))
        if self.prior == "loguniform":
            return float(math.exp(rng.uniform(math.log(self.low), math.log(self.high))))
        return float(rng.uniform(self.low, self.high))

    def perturb(self, value: Any, rng: np.random.Generator, factors: Sequence[float]) -> tuple[Any, str]:
        """`value` moved a little: times a factor (clipped to the bounds; an int rounded), or a
        categorical value shifted to a neighbour in the list. Returns the value and what was done."""
        if self.prior == "choice":
            index = self.choices.index(value)
            shift = int(rng.choice([-1, 1]))
            new = min(max(index + shift, 0), len(self.choices) - 1)
            return self.choices[new], f"shift {'left' if shift < 0 else 'right'}"
        factor = float(rng.choice(factors))
        new = min(max(value * factor, self.low), self.high)
        return (int(round(new)) if self.prior == "int" else float(new)), f"* {factor}"

    def contains(self, value: Any) -> bool:
        if self.prior == "choice":
            return value in self.choices
        return self.low <= value <= self.high and (self.prior != "int" or isinstance(value, int))

    def clip(self, value: Any) -> Any:
        """`value` within the bounds (Ray Tune perturbs without them)."""
        if self.prior == "choice":
            return value
        clipped = min(max(value, self.low), self.high)
        return int(round(clipped)) if self.prior == "int" else float(clipped)


@dataclass(frozen=True)
class SearchSpace:
    """The searched keys with PBT's explore rules (`perturbation_factors`, `resample_probability`)."""

    params: tuple[Hyperparameter, ...]
    perturbation_factors: tuple[float, ...] = (0.8, 1.2)
    resample_probability: float = 0.25

    def __post_init__(self):
        keys = [p.key for p in self.params]
        if not keys:
            raise UsageError("PBT needs at least one --search KEY=PRIOR:ARGS")
        if len(set(keys)) < len(keys):
            raise UsageError(f"--search names '{next(k for k in keys if keys.count(k) > 1)}' twice")
        if not self.perturbation_factors or any(not f > 0 for f in self.perturbation_factors):
            raise UsageError(f"perturbation factors must be positive numbers, got {list(self.perturbation_factors)}")
        if not 0 <= self.resample_probability <= 1:
            raise UsageError(f"the resample probability must be in [0, 1], got {self.resample_probability}")

    @property
    def keys(self) -> list[str]:
        return [p.key for p in self.params]

    def sample(self, rng: np.random.Generator) -> dict:
        """Hyperparameters drawn from the priors (a new member)."""
        return {p.key: p.sample(rng) for p in self.params}

    def explore(self, hparams: dict, rng: np.random.Generator) -> tuple[dict, dict]:
        """PBT's explore step on `hparams`: per key, resample from the prior with
        `resample_probability`, else perturb. Returns the new values and {key: operation}."""
        new, operations = dict(hparams), {}
        for p in self.params:
            if rng.random() < self.resample_probability:
                new[p.key], operations[p.key] = p.sample(rng), "resample"
            else:
                new[p.key], operations[p.key] = p.perturb(hparams[p.key], rng, self.perturbation_factors)
        return new, operations


@dataclass
class Decision:
    """What happens to one member at a ready step: `donor` is the member whose weights (and
    optimiser state) it copies (None: keeps its own), `hparams` what it trains with next."""

    member: int
    donor: int | None
    hparams: dict
    operations: dict = field(default_factory=dict)


def truncation_selection(scores: Sequence[float], quantile: float, rng: np.random.Generator) -> list[tuple[int, int]]:
    """(member, donor) pairs of truncation selection (the paper's section 3.2; Ray Tune's rule).

    Members with a NaN score take no part. The rest are ranked by score (ties in random order);
    the bottom ceil(quantile * n) of them, at most n // 2, each copy a member drawn uniformly
    from as many at the top.
    """
    if not 0 < quantile <= 0.5:
        raise UsageError(f"the exploit quantile must be in (0, 0.5], got {quantile}")
    ranked = [i for i in rng.permutation(len(scores)).tolist() if not math.isnan(scores[i])]
    ranked.sort(key=lambda i: scores[i])  # stable: the shuffle breaks ties
    if len(ranked) < 2:
        return []
    n = min(math.ceil(len(ranked) * quantile), len(ranked) // 2)
    bottom, top = ranked[:n], ranked[-n:]
    return [(member, top[int(rng.integers(len(top)))]) for member in bottom]


def pbt_step(
    scores: Sequence[float], hparams: Sequence[dict], rng: np.random.Generator, explore: Explore | None, quantile: float = 0.25, exploit: bool = True
) -> list[Decision]:
    """One synchronous ready step for the whole population: a `Decision` per member.

    Args:
        scores: each member's score (higher is better; NaN: not ranked).
        hparams: each member's current hyperparameters.
        rng: draws the ties, donors and perturbations.
        explore: perturbs a copy of hyperparameters (`SearchSpace.explore`); None: no explore
            step (the exploit-only ablation).
        quantile: the truncation fraction.
        exploit: False gives the explore-only ablation: nobody copies, and every member
            perturbs its own hyperparameters.
    """
    decisions = [Decision(i, None, dict(h)) for i, h in enumerate(hparams)]
    if exploit:
        for member, donor in truncation_selection(scores, quantile, rng):
            new, operations = explore(hparams[donor], rng) if explore else (dict(hparams[donor]), {})
            decisions[member] = Decision(member, donor, new, operations)
    elif explore:
        for d in decisions:
            d.hparams, d.operations = explore(hparams[d.member], rng)
    return decisions


def generator_state(rng: np.random.Generator) -> dict:
    """`rng`'s state as plain JSON values (for a population's state file)."""
    return rng.bit_generator.state


def restore_generator(state: dict) -> np.random.Generator:
    rng = np.random.default_rng()
    rng.bit_generator.state = state
    return rng
