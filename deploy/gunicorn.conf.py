"""gunicorn settings for production: `gunicorn --config deploy/gunicorn.conf.py`.

Read by the Dockerfile's command and the Procfile; `make run` passes its own flags instead.
Variables are documented in deploy/env.example (section "Processes").
"""

import os

wsgi_app = "visio_broker.wsgi:application"

# In a container the port must be reachable from the proxy; elsewhere set GUNICORN_BIND to a
# loopback address or a unix socket (unix:/run/visio-broker/gunicorn.sock).
bind = [os.environ.get("GUNICORN_BIND") or f"0.0.0.0:{os.environ.get('PORT') or 8000}"]  # noqa: S104
workers = int(os.environ.get("WEB_CONCURRENCY") or 2)
threads = int(os.environ.get("GUNICORN_THREADS") or 4)
worker_class = "gthread"
timeout = int(os.environ.get("GUNICORN_TIMEOUT") or 30)
graceful_timeout = 30
keepalive = 5
# Recycle workers now and then so a slow leak cannot grow without bound.
max_requests = 2000
max_requests_jitter = 200

accesslog = "-"
errorlog = "-"
# Calendar feed URLs carry a capability token: the access and error logs show it redacted.
logger_class = "visio_broker.gunicorn_logging.RedactingLogger"

# Only the reverse proxy may tell gunicorn the original scheme and client address.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS") or "127.0.0.1,::1"

# gunicorn >= 25.1 opens a control socket in $HOME by default; nothing here uses it, and a
# read-only or shared home must not stop the web server from starting.
control_socket_disable = True
