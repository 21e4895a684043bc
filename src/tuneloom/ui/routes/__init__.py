"""The console's routers, one module per page group."""

from tuneloom.ui.routes import feedback, pages, playground, registry, runs

ROUTERS = [pages.router, runs.router, registry.router, playground.router, feedback.router]
