"""Entry point: ``python -m ca12.game_theory GAME_NAME_OR_FILE [--json]``."""

from __future__ import annotations

import sys

from ca12.game_theory.cli import main

if __name__ == "__main__":
    sys.exit(main())
