"""Small Sphinx fixes for the built book (loaded through ``_config.yml``'s local_extensions).

sphinx-thebe registers its inline configuration script each time Sphinx reads the documents,
and sphinxcontrib-bibtex makes Sphinx read them twice, so every page declared ``THEBE_JS_URL``
twice and the browser logged a ``SyntaxError``. This extension drops exact duplicates from each
page's script list.
"""

from __future__ import annotations


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


def setup(app):
    # early: html-page-context stops at the first handler that returns a template name
    app.connect("html-page-context", _dedupe_scripts, priority=100)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
