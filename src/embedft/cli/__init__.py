"""The command line: ``embedft train|eval|infer|report`` (:mod:`embedft.cli.app`, also behind ``make`` and
``scripts/``), what its commands share, and the torchrun launcher for several processes.
"""
