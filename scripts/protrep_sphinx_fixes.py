"""Sphinx extension for the book: work around a Sphinx 7 bug that duplicates inline scripts.

Sphinx 7.4 (the last Sphinx that Jupyter Book 1.x accepts) writes an inline script twice
into every page when an extension adds it with ``app.add_js_file(None, body=...)`` after
the HTML builder was initialised: the builder keeps it with the file name ``None`` and
re-adds it from the registry as ``''`` before writing, and ``None != ''`` defeats its
duplicate check (fixed upstream in Sphinx 8.2, sphinx-doc/sphinx#13402). sphinx-thebe
adds ``const THEBE_JS_URL = ...`` that way, so every page threw "Identifier
'THEBE_JS_URL' has already been declared" in the browser (scripts/check_browser.py).

:func:`dedupe_scripts` drops the second copy from each page's ``script_files``.
``scripts/run_book.py`` stages this file as ``_ext/protrep_sphinx_fixes.py`` beside the
staged ``_config.yml``, whose ``sphinx.local_extensions`` loads it.
"""


def _script_key(js):
    """Identity of a script entry, with ``None`` and ``''`` (inline script) the same.

    Parameters
    ----------
    js : sphinx.builders.html._assets._JavaScript or str
        An entry of ``script_files``.

    Returns
    -------
    tuple or str
    """
    if isinstance(js, str):
        return js
    return (js.filename or "", js.priority, tuple(sorted(js.attributes.items())))


def dedupe_scripts(app, pagename, templatename, context, doctree):
    """``html-page-context`` handler: keep the first of equal entries of ``script_files``.

    The list is edited in place: it is the builder's own list, to which later handlers of
    the same event may still add page scripts (Sphinx restores it before the next page).

    Parameters
    ----------
    app : sphinx.application.Sphinx
    pagename, templatename : str
    context : dict
        The page's template context.
    doctree : docutils.nodes.document or None
    """
    files = context.get("script_files")
    if not files:
        return
    seen, unique = set(), []
    for js in files:
        key = _script_key(js)
        if key not in seen:
            seen.add(key)
            unique.append(js)
    files[:] = unique


def setup(app):
    """Register :func:`dedupe_scripts` (late, after the themes' own handlers).

    Parameters
    ----------
    app : sphinx.application.Sphinx

    Returns
    -------
    dict
        Extension metadata: safe for parallel reading and writing.
    """
    app.connect("html-page-context", dedupe_scripts, priority=900)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
