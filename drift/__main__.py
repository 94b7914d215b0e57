"""``python -m drift``: see :mod:`drift.cli`."""

from drift.cli import main

raise SystemExit(main())
