"""A small story-generation API, shaped like the apps gatehouse is put in front of.

usage: /usr/bin/python3 examples/demo_app.py [PORT]     (default 8000, listens on 127.0.0.1)

  GET  /                              hello and the endpoint list
  POST /api/generate                  {"prompt": "..."} -> {"id": .., "story": ..} after ~0.4 s
  GET  /api/generate/stream?prompt=   Server-Sent Events: one token per event (~50 ms apart),
                                      then "event: done"
  POST /api/revise                    {"id": N or "story": "...", "instruction": "..."} -> revised story
  GET  /api/stories/<id>              a story generated earlier (kept in memory)

No model is involved: stories are assembled from a fixed vocabulary, seeded by the prompt, so the
same prompt gives the same story. Every JSON answer echoes the X-Request-ID gatehouse sent.
"""
import itertools
import json
import random
import sys
import threading
import time

from flask import Flask, Response, jsonify, request, stream_with_context
from werkzeug.serving import WSGIRequestHandler

app = Flask(__name__)

_stories = {}
_stories_lock = threading.Lock()
_next_id = itertools.count(1)

OPENINGS = ["Once upon a time", "Long ago", "On a grey morning", "In a town by the sea",
            "At the edge of the forest"]
HEROES = ["a lighthouse keeper", "a retired robot", "a curious fox", "an apprentice baker",
          "a cartographer"]
TURNS = ["found a map that redrew itself every night", "heard a song coming from the well",
         "was handed a letter addressed to nobody", "noticed the clocks running backwards",
         "discovered a door that was not there yesterday"]
ENDINGS = ["and nothing was ever quite the same again.", "and learned that some doors open inward.",
           "and told the story to anyone who would listen.", "and finally got some sleep."]


def compose(prompt):
    rng = random.Random(prompt)
    return (f"{rng.choice(OPENINGS)}, {rng.choice(HEROES)} {rng.choice(TURNS)}. It had to do "
            f"with {prompt.strip()}, {rng.choice(ENDINGS)}")


def save(prompt, story):
    story_id = next(_next_id)
    with _stories_lock:
        _stories[story_id] = {"id": story_id, "prompt": prompt, "story": story,
                              "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    return story_id


def error(status, code, message):
    body = jsonify(error=code, message=message, request_id=request.headers.get("X-Request-ID"))
    return body, status


def prompt_from_json():
    data = request.get_json(silent=True)
    if not isinstance(data, dict) or not isinstance(data.get("prompt"), str) or not data["prompt"].strip():
        return None
    return data["prompt"][:2000]


@app.get("/")
def index():
    return jsonify(
        service="demo story generator",
        message="Hello from the app behind gatehouse.",
        request_id=request.headers.get("X-Request-ID"),
        endpoints=[
            "GET /",
            "POST /api/generate {\"prompt\": \"...\"}",
            "GET /api/generate/stream?prompt=...",
            "POST /api/revise {\"id\": 1, \"instruction\": \"...\"}",
            "GET /api/stories/<id>",
        ])


@app.post("/api/generate")
def generate():
    prompt = prompt_from_json()
    if prompt is None:
        return error(400, "invalid_prompt", 'Send JSON like {"prompt": "a lighthouse"}.')
    time.sleep(0.4)  # the "model"
    story = compose(prompt)
    story_id = save(prompt, story)
    return jsonify(id=story_id, prompt=prompt, story=story,
                   request_id=request.headers.get("X-Request-ID"))


@app.get("/api/generate/stream")
def generate_stream():
    prompt = request.args.get("prompt", "").strip()[:2000]
    if not prompt:
        return error(400, "invalid_prompt", "Pass ?prompt=...")
    story = compose(prompt)
    tokens = story.split(" ")

    def events():
        for i, token in enumerate(tokens):
            if i:
                time.sleep(0.05)
            yield f"data: {json.dumps({'index': i, 'token': token})}\n\n"
        story_id = save(prompt, story)
        yield f"event: done\ndata: {json.dumps({'id': story_id, 'tokens': len(tokens)})}\n\n"

    return Response(stream_with_context(events()), mimetype="text/event-stream",
                    headers={"Cache-Control": "no-cache"})


@app.post("/api/revise")
def revise():
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        return error(400, "invalid_request", 'Send JSON like {"id": 1, "instruction": "shorter"}.')
    story = data.get("story")
    if "id" in data:
        with _stories_lock:
            saved = _stories.get(data["id"]) if isinstance(data["id"], int) else None
        if saved is None:
            return error(404, "not_found", f"No story with id {data['id']!r}.")
        story = saved["story"]
    if not isinstance(story, str) or not story:
        return error(400, "invalid_request", 'Give "id" of a stored story or a "story" text.')
    instruction = str(data.get("instruction", "make it shorter"))[:500]
    time.sleep(0.3)
    if "short" in instruction.lower():
        revised = story.split(". ")[0].rstrip(".") + "."
    else:
        revised = f"{story} (Revised: {instruction}.)"
    story_id = save(f"revision of: {story[:60]}", revised)
    return jsonify(id=story_id, story=revised, instruction=instruction,
                   request_id=request.headers.get("X-Request-ID"))


@app.get("/api/stories/<int:story_id>")
def get_story(story_id):
    with _stories_lock:
        saved = _stories.get(story_id)
    if saved is None:
        return error(404, "not_found", f"No story with id {story_id}.")
    return jsonify(request_id=request.headers.get("X-Request-ID"), **saved)


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8000
    # HTTP/1.1 responses, so the event stream is chunked as under gunicorn/uvicorn (Werkzeug's
    # development server still closes the connection after each response).
    WSGIRequestHandler.protocol_version = "HTTP/1.1"
    app.run(host="127.0.0.1", port=port, threaded=True, use_reloader=False)
