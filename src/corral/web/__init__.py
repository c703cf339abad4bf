"""The web console: server-rendered pages (Jinja2) made live with htmx, at `/`."""
