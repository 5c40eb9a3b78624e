"""The book tooling: executing the chapters, their page helpers and the scorecard page.

Nothing else in :mod:`cca_lib` imports this package: the measures, the engine and the chapter
modules work without a checkout of the book. The one entry point is
``python -m cca_lib.book`` (what ``make book`` and ``make chapter`` run; ``--help`` lists its
options), i.e. :func:`main`.

* :mod:`cca_lib.book.chapters`: the chapters listed in ``_toc.yml`` and their parameters per
  profile;
* :mod:`cca_lib.book.execute`: executes the chapters with papermill (:func:`build`);
* :mod:`cca_lib.book.schedule`: the order chapters start in, from their measured times;
* :mod:`cca_lib.book.scorecard`: a chapter's claims recorded during a build (:func:`record`)
  and the scorecard page rendered from them;
* :mod:`cca_lib.book.pages`: the tables a chapter page shows (:func:`evidence_table`,
  :func:`parameter_table`).

A chapter notebook uses it as ``from cca_lib import book`` and calls ``book.record``,
``book.evidence_table`` and ``book.parameter_table``.
"""

from cca_lib.book.chapters import PROFILES, chapter_module, load_params, toc_chapters
from cca_lib.book.execute import build, main
from cca_lib.book.pages import evidence_table, format_value, parameter_table
from cca_lib.book.scorecard import record, write_page

__all__ = ["PROFILES", "build", "chapter_module", "evidence_table", "format_value",
           "load_params", "main", "parameter_table", "record", "toc_chapters", "write_page"]
