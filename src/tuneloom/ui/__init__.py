"""The web console: the whole loop in a browser, over the same Python API the CLI uses.

app.py         create_console / mount_console / run_console (FastAPI, Jinja2 templates)
sessions.py    logins with admin or reviewer API keys, server-side sessions, CSRF tokens
jobs.py        prepare/train/eval/run as server-side jobs recorded in the workspace (jobrun.py runs one)
views.py       what pages show, read through tuneloom.artifacts
charts.py      inline SVG charts (no chart library, nothing from the network)
playground.py  base / tuned / production answering one prompt; answers go to the feedback store
routes/        one router per page group
templates/, static/   the pages and the vendored htmx (no CDN, no web fonts)
"""

from tuneloom.ui.app import create_console, mount_console, run_console

__all__ = ["create_console", "mount_console", "run_console"]
