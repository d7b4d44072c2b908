"""A story app's routes, as Flask declares them: the shape issue 15's route templates are for.

usage: story_app.py PORT

  GET  /                             the landing page
  GET  /api/stories/<id>             one story
  POST /api/stories/<id>/revise      an (expensive, LLM-backed) revision of one story
"""
import json
import sys

from flask import Flask, Response, request

app = Flask(__name__)


def reply(**data):
    data["path"] = request.path
    return Response(json.dumps(data), mimetype="application/json")


@app.route("/")
def landing():
    return reply(page="landing")


@app.route("/api/stories/<story_id>")
def story(story_id):
    return reply(story=story_id)


@app.route("/api/stories/<story_id>/revise", methods=["POST"])
def revise(story_id):
    return reply(story=story_id, revised=True)


if __name__ == "__main__":
    app.run(host="127.0.0.1", port=int(sys.argv[1]), threaded=True)
