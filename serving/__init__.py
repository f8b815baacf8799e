"""How gunicorn serves the app in production: its worker (settings: gunicorn.conf.py)."""
