"""Tame tool protocol v1 shim: run one Python tool `module:function`.

Reads the request from stdin ({"protocol_version": 1, "tool", "entry",
"payload", ...}), imports the entry, calls it with the payload and writes one
JSON response to stdout: {"ok": true, "protocol_version": 1, "result": ...}
or {"ok": false, "protocol_version": 1, "error": {"type", "message"}}.
Anything the tool prints goes to stderr so stdout stays one JSON document.
Exit code 0 whenever a response was written; 2 when the request itself is
unreadable.
"""
import importlib
import json
import os
import sys

PROTOCOL_VERSION = 1


def _error(kind, message, reason_code=None):
    err = {"type": kind, "message": message}
    if reason_code:
        err["reason_code"] = reason_code
    return {"ok": False, "protocol_version": PROTOCOL_VERSION, "error": err}


def _run(request):
    if not isinstance(request, dict):
        return _error("ProtocolError", "request must be a json object", "bad_request")
    version = request.get("protocol_version")
    if version != PROTOCOL_VERSION:
        return _error("ProtocolError", "unsupported protocol_version %r" % (version,), "protocol_version")
    entry = request.get("entry")
    if not isinstance(entry, str) or entry.count(":") != 1:
        return _error("ProtocolError", "entry must look like `module:function`, got %r" % (entry,), "bad_entry")
    module_name, func_name = entry.split(":")
    payload = request.get("payload", {})
    if payload is None:
        payload = {}
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - reported to the caller
        return _error(type(exc).__name__, "cannot import `%s`: %s" % (module_name, exc), "import_failed")
    func = module
    for part in func_name.split("."):
        func = getattr(func, part, None)
        if func is None:
            return _error("AttributeError", "`%s` has no attribute `%s`" % (module_name, func_name), "bad_entry")
    if not callable(func):
        return _error("TypeError", "`%s` is not callable" % entry, "bad_entry")
    real_stdout = sys.stdout
    sys.stdout = sys.stderr
    try:
        result = func(payload)
    except Exception as exc:  # noqa: BLE001 - reported to the caller
        return _error(type(exc).__name__, str(exc))
    finally:
        sys.stdout = real_stdout
    try:
        json.dumps(result)
    except (TypeError, ValueError) as exc:
        return _error("TypeError", "result is not json serializable: %s" % exc, "bad_result")
    return {"ok": True, "protocol_version": PROTOCOL_VERSION, "result": result}


def main():
    raw = sys.stdin.read()
    try:
        request = json.loads(raw)
    except ValueError as exc:
        sys.stderr.write("tame tool shim: request is not json: %s\n" % exc)
        sys.exit(2)
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    response = _run(request)
    sys.stdout.write(json.dumps(response))
    sys.stdout.write("\n")
    sys.stdout.flush()


main()
