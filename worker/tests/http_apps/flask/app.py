"""A Flask (WSGI) app as people write them, served at /run/<name>."""

from flask import Flask, Response, jsonify, make_response, request

app = Flask(__name__)


@app.route("/")
def index():
    return "flask root"


@app.route("/tea", methods=["GET", "POST"])
def tea():
    body = request.get_data() if request.method == "POST" else b"short and stout"
    resp = make_response(body, 418)
    resp.headers["X-Tea"] = "earl grey"
    resp.set_cookie("kettle", "on")
    return resp


@app.route("/echo/<path:rest>", methods=["GET", "POST"])
def echo(rest):
    return jsonify(
        method=request.method,
        path=request.script_root + request.path,
        rest=rest,
        script_root=request.script_root,
        url=request.url,
        args=request.args.to_dict(flat=False),
        cookie=request.cookies.get("a"),
        agent=request.headers.get("User-Agent"),
        remote=request.remote_addr,
    )


@app.route("/binary", methods=["GET", "POST"])
def binary():
    data = request.get_data() if request.method == "POST" else bytes(range(256))
    return Response(data, mimetype="application/octet-stream")
