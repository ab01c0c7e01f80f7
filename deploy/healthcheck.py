"""Container health check: exit 0 when this node's /readyz answers 200 (used by compose.yaml)."""

import http.client
import os
import sys
from urllib.parse import urlsplit


def main() -> int:
    # The Host header must be one of ALLOWED_HOSTS; the forwarded scheme is what the TLS proxy
    # would send, so production's HTTPS redirect does not answer instead of the view.
    host = urlsplit(os.environ.get("SITE_URL") or "http://localhost").hostname or "localhost"
    port = int(os.environ.get("PORT") or 8000)
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", "/readyz", headers={"Host": host, "X-Forwarded-Proto": "https"})
        response = connection.getresponse()
        body = response.read(500).decode(errors="replace")
    except (OSError, http.client.HTTPException) as exc:
        print(f"readyz: {exc}", file=sys.stderr)
        return 1
    finally:
        connection.close()
    if response.status != 200:
        print(f"readyz: {response.status} {body}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
