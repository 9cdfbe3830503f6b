"""The website: server-rendered pages for citizens, caretakers and operators.

Served by the API process (`api` mounts it); every number on a page comes from a
/v1 document, read in-process through the `web.source.ApiReader` that `api` hands
in.  Templates in ``templates/``, gettext catalogues in ``translations/`` (bokmål
and English), static files and vendored front-end libraries in ``static/``.
"""
