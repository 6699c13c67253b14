"""``python -m bot.cli``: the same as the ``hubbot`` console script."""
from bot.cli.main import main

raise SystemExit(main())
