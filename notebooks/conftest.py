"""nbval settings for the chapter notebooks.

nbval waits only 5 seconds for a kernel's output messages after a cell has finished. On a
2-core machine running two notebooks and the test suite side by side, a kernel that has just
finished a minutes-long training cell can take longer than that to deliver them, and nbval then
fails the cell although it ran. The wait is raised here; a cell that really hangs is still
stopped by nbval's cell timeout (``--nbval-cell-timeout``).
"""

from __future__ import annotations

#: Seconds nbval waits for a finished cell's output messages.
OUTPUT_TIMEOUT = 120


def pytest_collection_modifyitems(session, config, items):
    for item in items:
        if type(item).__name__ == "IPyNbCell" and hasattr(item, "output_timeout"):
            item.output_timeout = OUTPUT_TIMEOUT
