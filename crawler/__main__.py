"""``python -m crawler`` is the ``crawl`` command."""

from .cli import main

main()
