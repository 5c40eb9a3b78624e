"""One module per chapter: ``Config`` (frozen dataclass, defaults = quick profile) and
``run(config) -> Result`` with the numbers the chapter plots and checks.

Import the one you need, e.g. ``from cca_lib.experiments import signal_noise``.
"""
