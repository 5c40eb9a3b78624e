"""Small Sphinx fixes for the built book (loaded through ``_config.yml``'s local_extensions).

Launch buttons. A chapter page is rendered from its executed copy ``book/executed/<name>.ipynb``,
build output that git ignores, and sphinx-book-theme builds each launch URL (Binder, Colab,
JupyterHub, ...) from the page's own path. After the theme has added its buttons, this extension
points them at the chapter's source ``notebooks/<name>.ipynb``, which is in the repository (see
``launch.py`` beside this file).

API reference. ``book/api.md`` documents ``cca_lib`` with autodoc; this extension puts the
repository root first on ``sys.path`` so that autodoc imports the checkout's library.

Duplicate scripts. sphinx-thebe registers its inline configuration script each time Sphinx
reads the documents, and sphinxcontrib-bibtex makes Sphinx read them twice, so every page
declared ``THEBE_JS_URL`` twice and the browser logged a ``SyntaxError``. This extension drops
exact duplicates from each page's script list.
"""

from __future__ import annotations

import sys
from pathlib import Path

from launch import source_notebook  # book/_ext is on sys.path (local_extensions)

ROOT = Path(__file__).resolve().parents[2]


def _script_key(script) -> tuple:
    attributes = getattr(script, "attributes", {}) or {}
    filename = getattr(script, "filename", script) or ""  # inline scripts: None or ""
    return (str(filename),
            tuple(sorted((k, str(v)) for k, v in attributes.items())))


def _dedupe_scripts(app, pagename, templatename, context, doctree) -> None:
    scripts = context.get("script_files")
    if not scripts:
        return
    seen: set[tuple] = set()
    unique = []
    for script in scripts:
        key = _script_key(script)
        if key not in seen:
            seen.add(key)
            unique.append(script)
    # in place: Sphinx hands the builder's own list, and handlers that run after this one
    # (MathJax's, on pages with math) append their scripts to that same list
    scripts[:] = unique


def _launch_from_sources(app, pagename, templatename, context, doctree) -> None:
    """Make the launch buttons of an executed chapter open ``notebooks/<name>.ipynb``.

    The theme (``header_buttons/launch.py``) ends every launch URL with the page's path relative
    to the repository, ``<path_to_docs>/<pagename>.ipynb``; that tail is replaced, nothing else.
    """
    target = source_notebook(pagename)
    if target is None:
        return
    options = app.config["html_theme_options"]
    prefix = options.get("path_to_docs", "").strip("/")
    prefix = f"{prefix}/" if prefix else ""
    built = f"{prefix}{pagename}.ipynb"
    for group in context.get("header_buttons", []):
        if group.get("label") != "launch-buttons":
            continue
        for button in group.get("buttons", []):
            url = button.get("url")
            if not url:
                continue
            if not url.endswith(built):
                raise RuntimeError(f"{pagename}: launch URL {url!r} does not end with {built!r}; "
                                   "sphinx-book-theme changed how it builds launch URLs")
            button["url"] = url[: -len(built)] + prefix + target


def setup(app):
    # the API reference (autodoc) documents the cca_lib of this checkout, not an installed copy
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    # early: html-page-context stops at the first handler that returns a template name
    app.connect("html-page-context", _dedupe_scripts, priority=100)
    # after sphinx-book-theme's add_launch_buttons (priority 501)
    app.connect("html-page-context", _launch_from_sources, priority=510)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
