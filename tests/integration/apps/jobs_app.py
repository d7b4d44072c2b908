"""Flask upstream for the async-jobs tests (issue 13).

usage: jobs_app.py PORT

  /gen?sleep=S&fail=N&status=C  any method: sleeps S seconds; the first N calls carrying the same
                                Idempotency-Key answer C (default 503); then 201 with JSON of what
                                was received (body sha256, Idempotency-Key, the call count) and
                                an X-Job-App header
  /fail                         always 503 (Retry-After: 0)
  /bad                          always 422
  /seen                         GET: {"<Idempotency-Key>": calls} for every key seen on /gen, /fail
  /mode?fail=0|1                POST: /flaky fails (503) or not from now on
  /flaky                        503 while /mode says so, else 200
"""
import hashlib
import json
import sys
import threading
import time

from flask import Flask, Response, request

app = Flask(__name__)
lock = threading.Lock()
seen = {}
state = {"flaky_fail": True}


def count():
    key = request.headers.get("Idempotency-Key", "")
    with lock:
        seen[key] = seen.get(key, 0) + 1
        return key, seen[key]


@app.route("/gen", methods=["GET", "POST", "PUT"])
def gen():
    key, calls = count()
    body = request.get_data(cache=False)
    time.sleep(float(request.args.get("sleep", "0")))
    if calls <= int(request.args.get("fail", "0")):
        return Response(json.dumps({"error": "try again"}), status=int(request.args.get("status", "503")),
                        mimetype="application/json", headers={"Retry-After": "0"})
    data = {
        "sha256": hashlib.sha256(body).hexdigest(),
        "body_len": len(body),
        "idempotency_key": key,
        "calls": calls,
        "method": request.method,
        "query": request.query_string.decode("latin-1"),
        "request_id": request.headers.get("X-Request-ID"),
        "forwarded_for": request.headers.get("X-Forwarded-For"),
        "forwarded_proto": request.headers.get("X-Forwarded-Proto"),
        "forwarded_host": request.headers.get("X-Forwarded-Host"),
        "authorization": request.headers.get("Authorization"),
        "content_type": request.headers.get("Content-Type"),
    }
    return Response(json.dumps(data), status=201, mimetype="application/json",
                    headers={"X-Job-App": "yes", "Set-Cookie": "a=b"})


@app.route("/fail", methods=["GET", "POST"])
def fail():
    count()
    return Response('{"error":"down"}', status=503, mimetype="application/json",
                    headers={"Retry-After": "0"})


@app.route("/bad", methods=["POST"])
def bad():
    count()
    return Response('{"error":"bad input"}', status=422, mimetype="application/json")


@app.route("/mode", methods=["POST"])
def mode():
    state["flaky_fail"] = request.args.get("fail") == "1"
    return "{}"


@app.route("/flaky", methods=["POST"])
def flaky():
    count()
    if state["flaky_fail"]:
        return Response('{"error":"down"}', status=503, mimetype="application/json",
                        headers={"Retry-After": "0"})
    return Response('{"ok":true}', status=200, mimetype="application/json")


@app.route("/seen", methods=["GET"])
def get_seen():
    with lock:
        return Response(json.dumps(seen), mimetype="application/json")


if __name__ == "__main__":
    app.run(host="127.0.0.1", port=int(sys.argv[1]), threaded=True, use_reloader=False)
