"""Flask upstream that fails the way Python apps do, for the Sentry tests.

usage: crash_app.py PORT

  /crash?pad=N   500 with a Python traceback as text/html (a debug page), N filler lines in it
  /json500       500 with the app's own JSON error (not intercepted)
  /slow?s=2      sleeps s seconds, then 200
  /ok            200
"""
import sys
import time
import traceback

from flask import Flask, Response, request

app = Flask(__name__)


def load_story(story_id, pad):
    password = "hunter2-db-password"  # noqa: F841 - shows in the traceback's text below
    raise KeyError(f"story {story_id} not found; " + "x" * pad)


@app.route("/crash", methods=["GET", "POST"])
def crash():
    pad = int(request.args.get("pad", "0"))
    try:
        load_story(7, pad)
    except KeyError:
        text = traceback.format_exc()
    body = ("<html><body><h1>Internal Server Error</h1><pre>"
            + text + "\npassword=hunter2-db-password\n</pre></body></html>")
    return Response(body, status=500, mimetype="text/html")


@app.route("/json500")
def json500():
    return Response('{"error":"db down"}', status=500, mimetype="application/json")


@app.route("/slow")
def slow():
    time.sleep(float(request.args.get("s", "2")))
    return "slow\n"


@app.route("/ok")
def ok():
    return "ok\n"


if __name__ == "__main__":
    app.run(host="127.0.0.1", port=int(sys.argv[1]), threaded=True)
