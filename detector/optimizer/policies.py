"""The policies by name, as the backtest and the service's config choose them.

The learning policy imports PyTorch; it is loaded only when chosen, so that
the `aiops` command starts quickly.
"""

from __future__ import annotations

from detector.optimizer.estimate import Policy
from detector.optimizer.sizer import DEFAULT, PLAIN, Rules

POLICY_NAMES = (
    "bandit",
    "bandit-prior",
    "bandit-network",
    "vpa-style",
    "krr-style",
    "window-max",
)


def make_policy(name: str) -> tuple[Policy, Rules]:
    """A fresh policy and the rules it runs under; KeyError names the choices.

    The reference policies run as users run them: on the period grid, without
    reactions or floors. "bandit-prior" needs the weights that
    `make train-optimizer` writes; PriorError says so when they are missing.
    """
    if name == "bandit-prior":
        from detector.optimizer.agent import BanditPolicy
        from detector.optimizer.agent_config import AgentConfig
        from detector.optimizer.prior import SHIPPED, PriorError, load

        prior = load(SHIPPED)
        try:
            return BanditPolicy(AgentConfig(), prior=prior), DEFAULT
        except ValueError as exc:
            # Weights learnt for other inputs (an older release's features)
            # are as unfit as malformed ones.
            raise PriorError(f"{str(SHIPPED)!r}: {exc}") from exc
    if name in ("bandit", "bandit-network"):
        from detector.optimizer.agent import BanditPolicy
        from detector.optimizer.agent_config import AgentConfig

        return BanditPolicy(AgentConfig(use_network=name == "bandit-network")), DEFAULT

    from detector.optimizer.baselines import KrrPolicy, VpaPolicy, WindowMaxPolicy

    baselines: dict[str, type[Policy]] = {
        "vpa-style": VpaPolicy,
        "krr-style": KrrPolicy,
        "window-max": WindowMaxPolicy,
    }
    if name not in baselines:
        raise KeyError(
            f"unknown policy {name!r}; choose one of {', '.join(POLICY_NAMES)}"
        )
    return baselines[name](), PLAIN


def check_policy(name: str) -> None:
    """Build policy `name` if building it reads a file; PriorError if unfit.

    For a service's config check, so that missing weights stop it there
    rather than once it starts. The other policies read nothing and are not
    built: "bandit-network" would import PyTorch.
    """
    if name == "bandit-prior":
        make_policy(name)
