"""Runs a WSGI app under gunicorn, the server most Flask and Django apps run in production:
`gunicorn_app.py PORT WORKERS DELAY_MS`. Sync workers serve one request at a time each and close
the connection after it, so every connection beyond WORKERS waits in gunicorn's listen backlog.
The app answers every path with its worker's pid after DELAY_MS."""
import os
import sys
import time

DELAY = 0.0


def app(environ, start_response):
    time.sleep(DELAY)
    body = f"{os.getpid()}\n".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


if __name__ == "__main__":
    port, workers, delay_ms = sys.argv[1], sys.argv[2], sys.argv[3]
    os.environ["GUNICORN_APP_DELAY_MS"] = delay_ms
    here = os.path.dirname(os.path.abspath(__file__))
    os.execvp("gunicorn", ["gunicorn", "--workers", workers, "--worker-class", "sync",
                           "--bind", f"127.0.0.1:{port}", "--chdir", here, "--log-level", "warning",
                           "--timeout", "60", "gunicorn_app:app"])
else:
    DELAY = int(os.environ.get("GUNICORN_APP_DELAY_MS", "0")) / 1000.0
