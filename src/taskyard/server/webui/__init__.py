"""The web dashboard: server-rendered pages (Jinja2) over the same services and permissions as the API.

``auth`` (the login cookie, the bearer header, CSRF), ``views`` (what the pages show, read from the
store), ``render`` (templates and formatting), and one routes module per part of the site.
"""
