#!/usr/bin/env python3
"""Authentik-compatible development directory for mailcloak's tests and demo.

Serves the part of Authentik's API that mailcloak uses: the paginated user
list GET /api/v3/core/users/ with Authorization: Bearer <API token>. Users
and tokens come from a data file (--data). Test hooks under /_dev/ inject
latency and failures and report counters; they exist only on this
development server.

Filters behave like Authentik's UsersFilter: username= and email= are
exact and case-sensitive, is_active= is a boolean, unknown parameters are
ignored, and search= is a case-insensitive substring match over username,
name and email. page (from 1) and page_size (default 20, at most 100)
page through the list, ordered by username.

Python 3 standard library only. Binds to 127.0.0.1 unless --host is
given. With --port 0 the first line on stdout is
"listening 127.0.0.1:PORT".
"""

import argparse
import json
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100
MAX_REQUEST_BODY = 64 * 1024
MAX_QUERY_FIELDS = 100
# A hung request is released by /_dev/reset, or after this many seconds.
HANG_LIMIT_SECONDS = 300
IDLE_TIMEOUT_SECONDS = 60
FAILURE_MODES = {"500", "html", "nonjson", "hang", "close", "401", "403"}
USERS_PATH = ["api", "v3", "core", "users"]


class RequestError(Exception):
    def __init__(self, status, body):
        super().__init__(status)
        self.status = status
        self.body = body


def make_user(pk, entry):
    if not isinstance(entry, dict) or not isinstance(entry.get("username"), str) or not entry["username"]:
        raise ValueError("each user needs a non-empty username")
    return {
        "pk": pk,
        "username": entry["username"],
        "name": str(entry.get("name", "")),
        "email": str(entry.get("email", "")),
        "is_active": bool(entry.get("is_active", True)),
        "type": str(entry.get("type", "internal")),
        "path": "users",
        "attributes": {},
    }


class Directory:
    """Users, tokens, injected failures and counters, under one lock."""

    def __init__(self, data_path):
        with open(data_path, encoding="utf-8") as file:
            data = json.load(file)
        self.lock = threading.Lock()
        self.tokens = set(data.get("tokens", []))
        self.users = {}
        self.next_pk = 1
        for entry in data.get("users", []):
            self.put_user(entry)
        self.hang_event = threading.Event()
        self.reset_config()
        self.reset_counters()

    def put_user(self, entry):
        with self.lock:
            existing = self.users.get(entry.get("username"))
            pk = existing["pk"] if existing else self.next_pk
            if not existing:
                self.next_pk += 1
            self.users[entry["username"]] = make_user(pk, entry)

    def reset_config(self):
        self.latency_ms = 0
        self.failure = None
        self.failure_count = None

    def reset_counters(self):
        self.requests = {}
        self.statuses = {}
        self.failures_injected = 0

    def count(self, table, key, sub=None):
        with self.lock:
            if sub is None:
                table[key] = table.get(key, 0) + 1
            else:
                inner = table.setdefault(key, {})
                inner[sub] = inner.get(sub, 0) + 1

    def take_failure(self):
        with self.lock:
            if self.failure is None:
                return None
            mode = self.failure
            if self.failure_count is not None:
                self.failure_count -= 1
                if self.failure_count <= 0:
                    self.failure = None
                    self.failure_count = None
            self.failures_injected += 1
            return mode

    def release_hung_requests(self):
        with self.lock:
            self.hang_event.set()
            self.hang_event = threading.Event()


def boolean(text):
    lowered = text.lower()
    if lowered in ("true", "1"):
        return True
    if lowered in ("false", "0"):
        return False
    raise RequestError(400, {"is_active": ["Enter a valid boolean."]})


def positive(query, name, default, high):
    values = query.get(name)
    if not values:
        return default
    try:
        value = int(values[0])
    except ValueError:
        raise RequestError(404, {"detail": "Invalid page."})
    if value < 1:
        raise RequestError(404, {"detail": "Invalid page."})
    return min(value, high)


def filter_users(users, query):
    def first(name):
        values = query.get(name)
        return values[0] if values else None

    selected = sorted(users, key=lambda user: user["username"])
    for field in ("username", "email"):
        wanted = first(field)
        if wanted is not None:
            selected = [user for user in selected if user[field] == wanted]
    active = first("is_active")
    if active is not None and active != "":
        wanted_active = boolean(active)
        selected = [user for user in selected if user["is_active"] == wanted_active]
    search = first("search")
    if search:
        terms = [term.lower() for term in search.replace(",", " ").split() if term]
        fields = ("username", "name", "email")
        for term in terms:
            selected = [user for user in selected if any(term in user[field].lower() for field in fields)]
    return selected


def paginate(users, query):
    page = positive(query, "page", 1, 1_000_000)
    size = positive(query, "page_size", DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
    total = len(users)
    pages = max(1, (total + size - 1) // size)
    if page > pages:
        raise RequestError(404, {"detail": "Invalid page."})
    start = (page - 1) * size
    results = users[start:start + size]
    return {
        "pagination": {
            "next": page + 1 if page < pages else 0,
            "previous": page - 1 if page > 1 else 0,
            "count": total,
            "current": page,
            "total_pages": pages,
            "start_index": start + 1 if results else 0,
            "end_index": start + len(results),
        },
        "results": results,
    }


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "authentik-dev/1"
    disable_nagle_algorithm = True
    timeout = IDLE_TIMEOUT_SECONDS

    @property
    def directory(self):
        return self.server.directory

    def log_message(self, format, *args):
        if self.server.verbose:
            sys.stderr.write("authentik-dev: " + (format % args) + "\n")

    def do_GET(self):
        self.dispatch("GET")

    def do_POST(self):
        self.dispatch("POST")

    def dispatch(self, method):
        self.endpoint = "other"
        try:
            body = self.read_body()
            split = urlsplit(self.path)
            segments = [unquote(s) for s in split.path.split("/")[1:]]
            if segments and segments[-1] == "":
                segments = segments[:-1]
            query = parse_qs(split.query, keep_blank_values=True, max_num_fields=MAX_QUERY_FIELDS)
            if segments and segments[0] == "_dev":
                self.endpoint = "dev"
                self.handle_dev(method, segments[1:], body)
            elif method == "GET" and segments == USERS_PATH:
                self.serve_users(query)
            else:
                self.endpoint = "not_found"
                self.directory.count(self.directory.requests, self.endpoint)
                self.send_json(404, {"detail": "Not found."})
        except RequestError as error:
            self.send_json(error.status, error.body)
        except ValueError as error:
            self.send_json(400, {"detail": str(error)})

    def serve_users(self, query):
        directory = self.directory
        self.endpoint = "users"
        directory.count(directory.requests, "users")
        if directory.latency_ms > 0:
            time.sleep(directory.latency_ms / 1000)
        if self.inject_failure():
            return
        header = self.headers.get("Authorization") or ""
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or token.strip() not in directory.tokens:
            self.send_json(403, {"detail": "Authentication credentials were not provided."})
            return
        with directory.lock:
            users = list(directory.users.values())
        self.send_json(200, paginate(filter_users(users, query), query))

    def inject_failure(self):
        mode = self.directory.take_failure()
        if mode is None:
            return False
        if mode == "500":
            self.send_json(500, {"detail": "A server error occurred."})
        elif mode == "html":
            page = (b"<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head>"
                    b"<body><h1>Bad Gateway</h1></body></html>\n")
            self.send_bytes(502, "text/html", page)
        elif mode == "nonjson":
            self.send_bytes(200, "text/plain", b"maintenance\n")
        elif mode == "401":
            self.send_json(401, {"detail": "Invalid token."})
        elif mode == "403":
            self.send_json(403, {"detail": "You do not have permission to perform this action."})
        elif mode == "hang":
            self.directory.count(self.directory.statuses, self.endpoint, "hang")
            self.directory.hang_event.wait(HANG_LIMIT_SECONDS)
            self.close_connection = True
        elif mode == "close":
            self.directory.count(self.directory.statuses, self.endpoint, "close")
            self.close_connection = True
        return True

    def read_body(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length < 0 or length > MAX_REQUEST_BODY:
            self.close_connection = True
            raise RequestError(413, {"detail": "request body too large"})
        return self.rfile.read(length) if length else b""

    def send_bytes(self, status, content_type, payload):
        # Count before sending, so that /_dev/stats read right after this
        # response already includes it.
        self.directory.count(self.directory.statuses, self.endpoint, str(status))
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(payload)

    def send_json(self, status, payload):
        self.send_bytes(status, "application/json", json.dumps(payload).encode("utf-8"))

    def json_body(self, body):
        try:
            value = json.loads(body or b"{}")
        except ValueError as error:
            raise RequestError(400, {"error": f"invalid JSON body: {error}"})
        if not isinstance(value, dict):
            raise RequestError(400, {"error": "the body must be a JSON object"})
        return value

    def handle_dev(self, method, rest, body):
        directory = self.directory
        if method == "GET" and rest == ["stats"]:
            with directory.lock:
                stats = {
                    "requests": dict(directory.requests),
                    "statuses": {k: dict(v) for k, v in directory.statuses.items()},
                    "failures_injected": directory.failures_injected,
                }
            self.send_json(200, stats)
        elif method == "POST" and rest == ["reset"]:
            with directory.lock:
                directory.reset_config()
                directory.reset_counters()
            directory.release_hung_requests()
            self.send_json(200, {"reset": True})
        elif method == "POST" and rest == ["config"]:
            self.send_json(200, self.apply_config(self.json_body(body)))
        elif method == "POST" and rest == ["users"]:
            options = self.json_body(body)
            try:
                entries = list(options.get("upsert", []))
                for entry in entries:
                    make_user(0, entry)
            except (ValueError, TypeError) as error:
                raise RequestError(400, {"error": f"invalid user: {error}"})
            for entry in entries:
                directory.put_user(entry)
            with directory.lock:
                deleted = sum(1 for name in options.get("delete", []) if directory.users.pop(str(name), None))
            self.send_json(200, {"upserted": len(entries), "deleted": deleted})
        else:
            self.send_json(404, {"error": "unknown /_dev/ hook"})

    def apply_config(self, options):
        known = {"latency_ms", "failure", "failure_count"}
        unknown = sorted(set(options) - known)
        if unknown:
            raise RequestError(400, {"error": f"unknown config keys {unknown}; known keys are {sorted(known)}"})
        changes = {}
        if "latency_ms" in options:
            value = options["latency_ms"]
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 600000:
                raise RequestError(400, {"error": "latency_ms must be an integer from 0 to 600000"})
            changes["latency_ms"] = value
        if "failure" in options:
            failure = options["failure"]
            if failure is not None and str(failure) not in FAILURE_MODES:
                raise RequestError(400, {"error": f"failure must be null or one of {sorted(FAILURE_MODES)}"})
            changes["failure"] = None if failure is None else str(failure)
        if "failure_count" in options:
            value = options["failure_count"]
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 1000000):
                raise RequestError(400, {"error": "failure_count must be null or an integer from 1 to 1000000"})
            changes["failure_count"] = value
        directory = self.directory
        with directory.lock:
            for name, value in changes.items():
                setattr(directory, name, value)
            return {"latency_ms": directory.latency_ms, "failure": directory.failure,
                    "failure_count": directory.failure_count}


class Server(ThreadingHTTPServer):
    daemon_threads = True
    # SO_REUSEADDR lets a restart bind while old connections sit in TIME_WAIT; on Linux it
    # does not let two processes listen on one port (that would take SO_REUSEPORT).
    allow_reuse_address = True

    def __init__(self, address, directory, verbose):
        super().__init__(address, Handler)
        self.directory = directory
        self.verbose = verbose


def main():
    parser = argparse.ArgumentParser(description="Authentik-compatible development directory")
    parser.add_argument("--data", required=True, help="data file: {\"tokens\": [...], \"users\": [...]}")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="TCP port; 0 picks a free one (default 0)")
    parser.add_argument("--verbose", action="store_true", help="log each request to stderr")
    arguments = parser.parse_args()

    # A launcher may start this process with SIGTERM blocked (the mask is
    # inherited), which would make "kill PID" a no-op.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT})
    signal.signal(signal.SIGTERM, signal.SIG_DFL)

    directory = Directory(arguments.data)
    server = Server((arguments.host, arguments.port), directory, arguments.verbose)
    host, port = server.server_address[0], server.server_address[1]
    sys.stdout.write(f"listening {host}:{port}\n")
    sys.stdout.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
