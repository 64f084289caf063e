"""Entry points: the ``spe-hub`` command line, the demo client, offline verification."""
