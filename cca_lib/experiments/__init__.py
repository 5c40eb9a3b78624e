"""One module per chapter: module ``<name>`` is the chapter ``notebooks/<name>.ipynb``.

Every ``Config`` derives from :class:`cca_lib.experiments._params.ChapterConfig`: each field is
declared once with its default, meaning, paper value and validator, and
``Config.from_params(mapping)`` builds a config from papermill parameters.

Import the one you need, e.g. ``from cca_lib.experiments import signal_noise``.

What a chapter module holds, and nothing else:

* ``Config``: a frozen dataclass of the chapter's parameters (defaults = the quick profile);
* ``Result``: the numbers the chapter plots and checks;
* ``run(config) -> Result``;
* ``check(result)``: the rules that decide the chapter's verdicts;
* its figures, ``plot_*(result)``, each returning the ``Figure``;
* private helpers that only this chapter uses.

Anything two chapters use lives once, in a shared module, and the chapters import it: analyses
and the per-net table in :mod:`cca_lib.analysis`, architectures and layer widths in
:mod:`cca_lib.models`, the figure theme and palettes in :mod:`cca_lib.plotting`, data,
training and recording in the engine (:mod:`cca_lib.data`, :mod:`cca_lib.training`,
:mod:`cca_lib.capture`). A chapter module may build on another chapter's ``Config`` or run
(``rnn_timesteps`` reuses ``rnn_dynamics``' LSTM), never on a copy of it.

A chapter module's docstring starts by naming its chapter (``Chapter: <what it shows>``) and the
paper's figures and claims it reproduces.
"""
