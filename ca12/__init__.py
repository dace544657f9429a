"""ca12: multi-agent reinforcement learning on PyTorch Lightning and TorchRL."""

import time

__version__ = "0.1.0"

# When this package was first imported: for `python -m ca12.fit`, the start of the command (within
# milliseconds), so `time/since_start_s` counts start-up (imports, env and W&B set-up) too.
STARTED_AT = time.time()

# The Python API (ca12/api.py), imported on first use: `import ca12` stays light (no torch).
_API = ("train", "load", "make_env", "Run")
__all__ = list(_API)


def __getattr__(name: str):
    if name in _API:
        from ca12 import api

        return getattr(api, name)
    raise AttributeError(f"module 'ca12' has no attribute '{name}'")
