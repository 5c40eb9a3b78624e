"""One module per chapter: ``Config`` (frozen dataclass, defaults = quick profile) and
``run(config) -> Result`` with the numbers the chapter plots and checks.

Every ``Config`` derives from :class:`cca_lib.experiments._params.ChapterConfig`: each field is
declared once with its default, meaning, paper value and validator, and
``Config.from_params(mapping)`` builds a config from papermill parameters.

Import the one you need, e.g. ``from cca_lib.experiments import signal_noise``.
"""
