#!/usr/bin/env python3
"""Keycloak-compatible development directory for mailcloak's tests and demo.

Serves the parts of Keycloak that mailcloak and Dovecot use: the OpenID
Connect token, introspection and userinfo endpoints of a realm, and the
admin REST user queries. Users, clients and service-account roles come
from a realm file (--data). Test hooks under /_dev/ inject latency and
failures and report counters; they exist only on this development server.

Python 3 standard library only. Binds to 127.0.0.1 unless --host is
given. With --port 0 the first line on stdout is
"listening 127.0.0.1:PORT".
"""

import argparse
import base64
import hashlib
import hmac
import json
import secrets
import signal
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

# Keycloak's Constants.DEFAULT_MAX_RESULTS for the user list.
DEFAULT_MAX_RESULTS = 100
DEFAULT_TOKEN_LIFESPAN = 300
MAX_REQUEST_BODY = 64 * 1024
MAX_QUERY_FIELDS = 100
# A hung request is released by /_dev/reset, or after this many seconds.
HANG_LIMIT_SECONDS = 300
# Idle keep-alive connections are closed after this many seconds.
IDLE_TIMEOUT_SECONDS = 60
OVERSIZE_BODY_BYTES = 2 * 1024 * 1024
REALM_MANAGEMENT = "realm-management"
QUERY_ROLES = {"query-users", "view-users", "manage-users"}
VIEW_ROLES = {"view-users", "manage-users"}
FAILURE_MODES = {"500", "html", "nonjson", "hang", "close", "401", "403", "oversize"}
FAILURE_SCOPES = {"admin", "token", "all"}


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class RequestError(Exception):
    """An error response: HTTP status plus a Keycloak-shaped JSON body."""

    def __init__(self, status, body):
        super().__init__(status)
        self.status = status
        self.body = body


class User:
    def __init__(self, realm_name, entry):
        username = entry.get("username")
        if not isinstance(username, str) or not username:
            raise ValueError(f"user without a username in realm {realm_name}: {entry!r}")
        # Keycloak stores usernames and email addresses in lower case.
        self.username = username.lower()
        email = entry.get("email")
        self.email = email.lower() if isinstance(email, str) and email else None
        self.id = entry.get("id") or str(uuid.uuid5(uuid.NAMESPACE_URL, f"{realm_name}/{self.username}"))
        self.first_name = entry.get("firstName")
        self.last_name = entry.get("lastName")
        self.enabled = bool(entry.get("enabled", True))
        self.email_verified = bool(entry.get("emailVerified", False))
        self.created = int(entry.get("createdTimestamp", 1700000000000))
        self.attributes = entry.get("attributes")
        self.service_account_client = entry.get("serviceAccountClientId")
        self.client_roles = {k: list(v) for k, v in (entry.get("clientRoles") or {}).items()}
        self.password = None
        for credential in entry.get("credentials") or []:
            if credential.get("type") == "password":
                self.password = credential.get("value")
        # Brute-force detection: the list endpoint still reports enabled=true
        # for a temporarily locked user, /users/{id} reports false.
        self.temporarily_locked = bool(entry.get("devTemporarilyLocked", False))

    def brief(self):
        out = {"id": self.id, "username": self.username}
        if self.first_name is not None:
            out["firstName"] = self.first_name
        if self.last_name is not None:
            out["lastName"] = self.last_name
        if self.email is not None:
            out["email"] = self.email
        out["emailVerified"] = self.email_verified
        out["createdTimestamp"] = self.created
        out["enabled"] = self.enabled
        return out

    def full(self, enabled_override=None):
        out = self.brief()
        if enabled_override is not None:
            out["enabled"] = enabled_override
        if self.attributes:
            out["attributes"] = self.attributes
        out["totp"] = False
        out["disableableCredentialTypes"] = []
        out["requiredActions"] = []
        out["notBefore"] = 0
        out["access"] = {
            "manageGroupMembership": True, "view": True, "mapRoles": True,
            "impersonate": False, "manage": True,
        }
        return out


class Client:
    def __init__(self, entry):
        self.client_id = entry["clientId"]
        self.secret = entry.get("secret")
        self.enabled = bool(entry.get("enabled", True))
        self.public = bool(entry.get("publicClient", False))
        self.service_accounts = bool(entry.get("serviceAccountsEnabled", False))
        self.direct_grants = bool(entry.get("directAccessGrantsEnabled", False))


class Realm:
    def __init__(self, entry, lifespan_override):
        self.name = entry["realm"]
        self.token_lifespan = int(lifespan_override or entry.get("accessTokenLifespan", DEFAULT_TOKEN_LIFESPAN))
        self.lock = threading.Lock()
        self.clients = {}
        for client_entry in entry.get("clients", []):
            client = Client(client_entry)
            self.clients[client.client_id] = client
        self.users = {}
        for user_entry in entry.get("users", []):
            self.put_user(User(self.name, user_entry))
        # Keycloak creates a service-account user for each client that may
        # use the client credentials grant.
        for client in self.clients.values():
            if client.service_accounts and self.service_account_user(client.client_id) is None:
                self.put_user(User(self.name, {
                    "username": f"service-account-{client.client_id}",
                    "serviceAccountClientId": client.client_id,
                }))

    # Handler threads read users while /_dev/users changes them, so every
    # access goes through the realm's lock.

    def put_user(self, user):
        with self.lock:
            existing = self.users.get(user.username)
            if existing is not None:
                user.id = existing.id
            self.users[user.username] = user

    def delete_user(self, username):
        with self.lock:
            return self.users.pop(username.lower(), None) is not None

    def users_snapshot(self):
        with self.lock:
            return list(self.users.values())

    def user_by_name(self, username):
        with self.lock:
            return self.users.get(username.lower())

    def service_account_user(self, client_id):
        for user in self.users_snapshot():
            if user.service_account_client == client_id:
                return user
        return None

    def user_by_id(self, user_id):
        for user in self.users_snapshot():
            if user.id == user_id:
                return user
        return None


def load_realms(path, lifespan_override):
    with open(path, encoding="utf-8") as handle:
        data = json.load(handle)
    entries = data["realms"] if "realms" in data else [data]
    realms = {}
    for entry in entries:
        realm = Realm(entry, lifespan_override)
        realms[realm.name] = realm
    return realms


def like_match(pattern, value):
    """Matches a lower-cased SQL LIKE pattern where only % is special."""
    if value is None:
        return False
    parts = pattern.split("%")
    if len(parts) == 1:
        return value == pattern
    if not value.startswith(parts[0]) or not value.endswith(parts[-1]):
        return False
    position = len(parts[0])
    end = len(value) - len(parts[-1])
    for middle in parts[1:-1]:
        found = value.find(middle, position, end)
        if found < 0:
            return False
        position = found + len(middle)
    return position <= end


def field_matches(user_value, wanted, exact):
    """Field filters: lower(col) = lower(v) with exact, else lower(col) LIKE %v%."""
    if user_value is None:
        return False
    if exact:
        return user_value.lower() == wanted.lower()
    return wanted.lower() in user_value.lower()


def search_term_matches(user, term):
    """Matches one whitespace-separated term of search=: "x" exact, * wildcard, else prefix."""
    fields = [user.username, user.email, user.first_name, user.last_name]
    fields = [f.lower() for f in fields if f]
    term = term.lower()
    if len(term) >= 2 and term.startswith('"') and term.endswith('"'):
        return term[1:-1] in fields
    pattern = term.replace("*", "%") if "*" in term else term + "%"
    return any(like_match(pattern, f) for f in fields)


class Directory:
    """Realm data, issued tokens, injected failures and counters, under one lock."""

    def __init__(self, data_path, lifespan_override):
        self.data_path = data_path
        self.lifespan_override = lifespan_override
        self.lock = threading.Lock()
        self.signing_key = secrets.token_bytes(32)
        self.realms = load_realms(data_path, lifespan_override)
        self.tokens = {}
        self.hang_event = threading.Event()
        self.reset_config()
        self.reset_counters()

    def reset_config(self):
        self.latency_ms = 0
        self.failure = None
        self.failure_scope = "admin"
        self.failure_count = None
        self.failure_status = 503
        self.token_lifespan = None
        # False emulates releases from before the exact parameter (added in
        # mid-2020, about Keycloak 11): they ignore it and match substrings.
        self.exact_supported = True

    def reset_counters(self):
        self.requests = {}
        self.statuses = {}
        self.tokens_issued = 0
        self.failures_injected = 0

    def config_view(self):
        return {
            "latency_ms": self.latency_ms, "failure": self.failure,
            "failure_scope": self.failure_scope, "failure_count": self.failure_count,
            "failure_status": self.failure_status, "token_lifespan": self.token_lifespan,
            "exact_supported": self.exact_supported,
        }

    def count_request(self, endpoint):
        with self.lock:
            self.requests[endpoint] = self.requests.get(endpoint, 0) + 1

    def count_status(self, endpoint, status):
        with self.lock:
            per_endpoint = self.statuses.setdefault(endpoint, {})
            per_endpoint[str(status)] = per_endpoint.get(str(status), 0) + 1

    def take_failure(self, scope):
        """Returns the failure mode to inject for a request in `scope`, or None."""
        with self.lock:
            if self.failure is None:
                return None
            if self.failure_scope != "all" and self.failure_scope != scope:
                return None
            mode = self.failure
            if self.failure_count is not None:
                self.failure_count -= 1
                if self.failure_count <= 0:
                    self.failure = None
                    self.failure_count = None
            self.failures_injected += 1
            return mode

    def issue_token(self, realm, client, subject_user, issuer):
        now = int(time.time())
        with self.lock:
            lifespan = self.token_lifespan or realm.token_lifespan
            jti = str(uuid.uuid4())
            claims = {
                "exp": now + lifespan, "iat": now, "jti": jti, "iss": issuer,
                "sub": subject_user.id, "typ": "Bearer", "azp": client.client_id,
                "scope": "profile email",
                "realm_access": {"roles": [f"default-roles-{realm.name}", "offline_access", "uma_authorization"]},
                "email_verified": subject_user.email_verified,
                "preferred_username": subject_user.username,
                "client_id": client.client_id,
            }
            if subject_user.email is not None:
                claims["email"] = subject_user.email
            resource_access = {k: {"roles": v} for k, v in subject_user.client_roles.items() if v}
            if resource_access:
                claims["resource_access"] = resource_access
            header = {"alg": "HS256", "typ": "JWT", "kid": "keycloak-dev"}
            signing_input = ".".join(b64url_encode(json.dumps(part).encode()) for part in (header, claims))
            signature = hmac.new(self.signing_key, signing_input.encode("ascii"), hashlib.sha256).digest()
            token = signing_input + "." + b64url_encode(signature)
            self.tokens[jti] = realm.name
            self.tokens_issued += 1
            return token, lifespan

    def validate_token(self, token):
        """Returns the claims of an active token, or None."""
        parts = token.split(".")
        if len(parts) != 3:
            return None
        signing_input = (parts[0] + "." + parts[1]).encode("ascii", "replace")
        expected = hmac.new(self.signing_key, signing_input, hashlib.sha256).digest()
        try:
            if not hmac.compare_digest(expected, b64url_decode(parts[2])):
                return None
            claims = json.loads(b64url_decode(parts[1]))
        except (ValueError, TypeError):
            return None
        with self.lock:
            if claims.get("jti") not in self.tokens:
                return None
        if claims.get("exp", 0) <= time.time():
            return None
        return claims

    def revoke_tokens(self):
        with self.lock:
            count = len(self.tokens)
            self.tokens.clear()
            return count

    def release_hung_requests(self):
        with self.lock:
            self.hang_event.set()
            self.hang_event = threading.Event()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "keycloak-dev/1"
    # Sets TCP_NODELAY on each accepted socket: without it every reused
    # keep-alive request waits about 40 ms for delayed ACKs.
    disable_nagle_algorithm = True
    timeout = IDLE_TIMEOUT_SECONDS

    @property
    def directory(self) -> Directory:
        return self.server.directory

    def log_message(self, format, *args):
        if self.server.verbose:
            sys.stderr.write("keycloak-dev: " + (format % args) + "\n")

    # Dispatch

    def do_GET(self):
        self.dispatch("GET")

    def do_POST(self):
        self.dispatch("POST")

    def do_PUT(self):
        self.dispatch("PUT")

    def do_DELETE(self):
        self.dispatch("DELETE")

    def dispatch(self, method):
        self.endpoint = "other"
        try:
            body = self.read_body()
            split = urlsplit(self.path)
            segments = [unquote(s) for s in split.path.split("/")[1:]]
            query = parse_qs(split.query, keep_blank_values=True, max_num_fields=MAX_QUERY_FIELDS)
            if segments and segments[0] == "_dev":
                self.endpoint = "dev"
                self.handle_dev(method, segments[1:], body)
                return
            self.route(method, segments, query, body)
        except RequestError as error:
            self.send_json(error.status, error.body)
        except ValueError as error:
            self.send_json(400, {"error": "invalid_request", "error_description": str(error)})

    def route(self, method, segments, query, body):
        if len(segments) >= 5 and segments[0] == "realms" and segments[2:4] == ["protocol", "openid-connect"]:
            realm_name, rest = segments[1], segments[4:]
            if rest == ["token"] and method == "POST":
                self.serve_oidc("token", lambda: self.token(realm_name, body))
                return
            if rest == ["token", "introspect"] and method == "POST":
                self.serve_oidc("introspect", lambda: self.introspect(realm_name, body))
                return
            if rest == ["userinfo"] and method in ("GET", "POST"):
                self.serve_oidc("userinfo", lambda: self.userinfo(realm_name))
                return
        if len(segments) >= 4 and segments[0:2] == ["admin", "realms"] and segments[3] == "users":
            realm_name, rest = segments[2], segments[4:]
            if method == "GET" and rest == []:
                self.serve_admin("users", lambda: self.list_users(realm_name, query))
                return
            if method == "GET" and rest == ["count"]:
                self.serve_admin("users_count", lambda: self.count_users(realm_name, query))
                return
            if method == "GET" and len(rest) == 1:
                self.serve_admin("user", lambda: self.get_user(realm_name, rest[0]))
                return
        self.endpoint = "not_found"
        self.directory.count_request(self.endpoint)
        self.send_json(404, {
            "error": "Unable to find matching target resource method",
            "error_description": "For more on this error consult the server log.",
        })

    def serve_oidc(self, endpoint, produce):
        self.serve(endpoint, "token" if endpoint == "token" else "oidc", produce)

    def serve_admin(self, endpoint, produce):
        self.serve(endpoint, "admin", produce)

    def serve(self, endpoint, scope, produce):
        self.endpoint = endpoint
        self.directory.count_request(endpoint)
        latency = self.directory.latency_ms
        if latency > 0:
            time.sleep(latency / 1000)
        if self.inject_failure(scope):
            return
        status, payload = produce()
        self.send_json(status, payload)

    # Request and response plumbing

    def read_body(self):
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            raise RequestError(411, {"error": "invalid_request", "error_description": "Content-Length required"})
        length = int(self.headers.get("Content-Length") or 0)
        if length < 0 or length > MAX_REQUEST_BODY:
            self.close_connection = True
            raise RequestError(413, {"error": "invalid_request", "error_description": "request body too large"})
        return self.rfile.read(length) if length else b""

    def send_bytes(self, status, content_type, payload, extra_headers=()):
        # Count before sending, so that /_dev/stats read right after this
        # response already includes it.
        self.directory.count_status(self.endpoint, status)
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        for name, value in extra_headers:
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def send_json(self, status, payload, extra_headers=()):
        data = json.dumps(payload).encode("utf-8")
        self.send_bytes(status, "application/json", data, extra_headers)

    def form(self, body):
        content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if content_type != "application/x-www-form-urlencoded":
            return {}
        parsed = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True, max_num_fields=MAX_QUERY_FIELDS)
        return {k: v[0] for k, v in parsed.items()}

    def bearer_token(self):
        header = self.headers.get("Authorization") or ""
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            return None
        return value.strip()

    def inject_failure(self, scope):
        mode = self.directory.take_failure(scope)
        if mode is None:
            return False
        if mode == "500":
            self.send_json(500, {"error": "unknown_error"})
        elif mode == "html":
            page = (b"<!DOCTYPE html>\n<html><head><title>503 Service Unavailable</title></head>"
                    b"<body><h1>Service Unavailable</h1><p>The upstream server is not ready.</p></body></html>\n")
            self.send_bytes(self.directory.failure_status, "text/html", page)
        elif mode == "nonjson":
            self.send_bytes(200, "text/plain", b"service temporarily unavailable\n")
        elif mode == "401":
            self.send_json(401, {"error": "HTTP 401 Unauthorized"})
        elif mode == "403":
            self.send_json(403, {"error": "HTTP 403 Forbidden"})
        elif mode == "oversize":
            chunk = b'{"username":"filler","enabled":false},'
            payload = b"[" + chunk * (OVERSIZE_BODY_BYTES // len(chunk)) + b'{"username":"last","enabled":false}]'
            self.send_bytes(200, "application/json", payload)
        elif mode == "hang":
            self.directory.count_status(self.endpoint, "hang")
            self.directory.hang_event.wait(HANG_LIMIT_SECONDS)
            self.close_connection = True
        elif mode == "close":
            self.directory.count_status(self.endpoint, "close")
            self.close_connection = True
        return True

    # OpenID Connect endpoints

    def realm(self, name):
        realm = self.directory.realms.get(name)
        if realm is None:
            raise RequestError(404, {"error": "Realm does not exist", "error_description": "Realm does not exist"})
        return realm

    def authenticate_client(self, realm, form):
        """Client authentication by HTTP Basic or by form fields, as Keycloak accepts both."""
        client_id, client_secret = form.get("client_id"), form.get("client_secret")
        header = self.headers.get("Authorization") or ""
        if header.lower().startswith("basic "):
            try:
                decoded = base64.b64decode(header[6:].strip()).decode("utf-8")
            except (ValueError, UnicodeDecodeError):
                decoded = ""
            user, _, password = decoded.partition(":")
            client_id, client_secret = unquote(user), unquote(password)
        if not client_id:
            raise RequestError(400, {"error": "invalid_client", "error_description": "Missing client_id parameter"})
        client = realm.clients.get(client_id)
        invalid = RequestError(401, {
            "error": "unauthorized_client",
            "error_description": "Invalid client or Invalid client credentials",
        })
        if client is None or not client.enabled:
            raise invalid
        if not client.public and (client.secret is None or not hmac.compare_digest(
                (client_secret or "").encode(), client.secret.encode())):
            raise invalid
        return client

    def token(self, realm_name, body):
        realm = self.realm(realm_name)
        form = self.form(body)
        grant_type = form.get("grant_type")
        if not grant_type:
            return 400, {"error": "invalid_request", "error_description": "Missing form parameter: grant_type"}
        client = self.authenticate_client(realm, form)
        if grant_type == "client_credentials":
            if client.public:
                return 401, {"error": "unauthorized_client",
                             "error_description": "Public client not allowed to retrieve service account"}
            subject = realm.service_account_user(client.client_id) if client.service_accounts else None
            if subject is None:
                return 401, {"error": "unauthorized_client",
                             "error_description": "Client not enabled to retrieve service account"}
        elif grant_type == "password":
            if not client.direct_grants:
                return 400, {"error": "unauthorized_client",
                             "error_description": "Client not allowed for direct access grants"}
            subject = realm.user_by_name(form.get("username") or "")
            if subject is None or subject.password is None or not hmac.compare_digest(
                    (form.get("password") or "").encode(), subject.password.encode()):
                return 401, {"error": "invalid_grant", "error_description": "Invalid user credentials"}
            if not subject.enabled:
                return 400, {"error": "invalid_grant", "error_description": "Account disabled"}
        else:
            return 400, {"error": "unsupported_grant_type", "error_description": "Unsupported grant_type"}
        issuer = f"http://{self.headers.get('Host', '127.0.0.1')}/realms/{realm.name}"
        token, lifespan = self.directory.issue_token(realm, client, subject, issuer)
        return 200, {
            "access_token": token, "expires_in": lifespan, "refresh_expires_in": 0,
            "token_type": "Bearer", "not-before-policy": 0, "scope": "profile email",
        }

    def introspect(self, realm_name, body):
        realm = self.realm(realm_name)
        form = self.form(body)
        try:
            self.authenticate_client(realm, form)
        except RequestError:
            return 401, {"error": "invalid_request", "error_description": "Authentication failed."}
        claims = self.directory.validate_token(form.get("token") or "")
        if claims is None or not claims.get("iss", "").endswith(f"/realms/{realm.name}"):
            return 200, {"active": False}
        answer = {
            "active": True, "sub": claims["sub"], "username": claims.get("preferred_username"),
            "exp": claims["exp"], "iat": claims["iat"], "client_id": claims.get("client_id"),
            "azp": claims.get("azp"), "scope": claims.get("scope"), "token_type": "Bearer",
            "iss": claims.get("iss"), "email_verified": claims.get("email_verified", False),
            "preferred_username": claims.get("preferred_username"),
        }
        if "email" in claims:
            answer["email"] = claims["email"]
        return 200, answer

    def userinfo(self, realm_name):
        self.realm(realm_name)
        claims = self.directory.validate_token(self.bearer_token() or "")
        if claims is None:
            return 401, {"error": "invalid_token", "error_description": "Token verification failed"}
        answer = {"sub": claims["sub"], "email_verified": claims.get("email_verified", False),
                  "preferred_username": claims.get("preferred_username")}
        if "email" in claims:
            answer["email"] = claims["email"]
        return 200, answer

    # Admin REST API

    def admin_roles(self, realm_name):
        """Authenticates the bearer token; returns the realm and the caller's realm-management roles."""
        claims = self.directory.validate_token(self.bearer_token() or "")
        if claims is None:
            raise RequestError(401, {"error": "HTTP 401 Unauthorized"})
        token_realm_name = claims.get("iss", "").rsplit("/realms/", 1)[-1]
        token_realm = self.directory.realms.get(token_realm_name)
        caller = token_realm.user_by_id(claims.get("sub")) if token_realm else None
        if caller is None or not caller.enabled:
            raise RequestError(401, {"error": "HTTP 401 Unauthorized"})
        realm = self.directory.realms.get(realm_name)
        if realm is None:
            raise RequestError(404, {"error": "Realm not found."})
        if token_realm_name != realm_name:
            raise RequestError(403, {"error": "HTTP 403 Forbidden"})
        # Like Keycloak, use the caller's current role mappings, not the
        # roles copied into the token when it was issued.
        return realm, set(caller.client_roles.get(REALM_MANAGEMENT, []))

    def filtered_users(self, realm, query):
        def value(name):
            values = query.get(name)
            return values[0] if values else None

        def integer(name, default):
            text = value(name)
            if text is None or text == "":
                return default
            try:
                return int(text)
            except ValueError:
                # JAX-RS returns 404 when a query parameter does not convert.
                raise RequestError(404, {"error": "HTTP 404 Not Found"})

        def boolean(name):
            text = value(name)
            return None if text is None else text.lower() == "true"

        exact = (boolean("exact") or False) and self.directory.exact_supported
        first = integer("first", -1)
        maximum = integer("max", DEFAULT_MAX_RESULTS)
        users = sorted(realm.users_snapshot(), key=lambda u: u.username)
        search = value("search")
        if search is not None and search.strip():
            terms = search.strip().split()
            users = [u for u in users if u.service_account_client is None
                     and all(search_term_matches(u, t) for t in terms)]
        else:
            fields = {"username": "username", "email": "email", "firstName": "first_name", "lastName": "last_name"}
            for parameter, attribute in fields.items():
                wanted = value(parameter)
                if wanted is not None:
                    users = [u for u in users if field_matches(getattr(u, attribute), wanted, exact)]
        enabled = boolean("enabled")
        if enabled is not None:
            users = [u for u in users if u.enabled == enabled]
        email_verified = boolean("emailVerified")
        if email_verified is not None:
            users = [u for u in users if u.email_verified == email_verified]
        if first > 0:
            users = users[first:]
        if maximum >= 0:
            users = users[:maximum]
        return users

    def list_users(self, realm_name, query):
        realm, roles = self.admin_roles(realm_name)
        if not roles & QUERY_ROLES:
            return 403, {"error": "HTTP 403 Forbidden"}
        # With query-users alone every user is filtered out by the view
        # permission, so the list comes back empty with status 200.
        if not roles & VIEW_ROLES:
            return 200, []
        brief_values = query.get("briefRepresentation") or ["false"]
        brief = brief_values[0].lower() == "true"
        users = self.filtered_users(realm, query)
        return 200, [u.brief() if brief else u.full() for u in users]

    def count_users(self, realm_name, query):
        realm, roles = self.admin_roles(realm_name)
        if not roles & QUERY_ROLES:
            return 403, {"error": "HTTP 403 Forbidden"}
        if not roles & VIEW_ROLES:
            return 200, 0
        unpaged = {k: v for k, v in query.items() if k not in ("first", "max")}
        unpaged["max"] = ["-1"]
        return 200, len(self.filtered_users(realm, unpaged))

    def get_user(self, realm_name, user_id):
        realm, roles = self.admin_roles(realm_name)
        user = realm.user_by_id(user_id)
        if not roles & VIEW_ROLES:
            return 403, {"error": "HTTP 403 Forbidden"}
        if user is None:
            return 404, {"error": "User not found"}
        return 200, user.full(enabled_override=user.enabled and not user.temporarily_locked)

    # Test hooks

    def handle_dev(self, method, rest, body):
        directory = self.directory
        if method == "GET" and rest == ["healthz"]:
            self.send_json(200, {"status": "ok"})
        elif method == "GET" and rest == ["stats"]:
            with directory.lock:
                stats = {
                    "requests": dict(directory.requests),
                    "statuses": {k: dict(v) for k, v in directory.statuses.items()},
                    "tokens_issued": directory.tokens_issued,
                    "active_tokens": len(directory.tokens),
                    "failures_injected": directory.failures_injected,
                }
            self.send_json(200, stats)
        elif method == "POST" and rest == ["reset"]:
            options = self.json_body(body) if body else {}
            if options.get("data"):
                realms = load_realms(directory.data_path, directory.lifespan_override)
                with directory.lock:
                    directory.realms = realms
                directory.revoke_tokens()
            with directory.lock:
                directory.reset_config()
                directory.reset_counters()
            directory.release_hung_requests()
            self.send_json(200, {"reset": True})
        elif method == "POST" and rest == ["config"]:
            self.send_json(200, self.apply_config(self.json_body(body)))
        elif method == "POST" and rest == ["revoke-tokens"]:
            self.send_json(200, {"revoked": directory.revoke_tokens()})
        elif method == "POST" and rest == ["users"]:
            self.send_json(200, self.change_users(self.json_body(body)))
        else:
            self.send_json(404, {"error": "unknown /_dev/ hook"})

    def json_body(self, body):
        try:
            value = json.loads(body or b"{}")
        except ValueError as error:
            raise RequestError(400, {"error": f"invalid JSON body: {error}"})
        if not isinstance(value, dict):
            raise RequestError(400, {"error": "the body must be a JSON object"})
        return value

    def apply_config(self, options):
        def bounded(name, low, high):
            value = options[name]
            if value is None:
                return None
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                raise RequestError(400, {"error": f"{name} must be an integer from {low} to {high}, got {value!r}"})
            return value

        known = {"latency_ms", "failure", "failure_scope", "failure_count", "failure_status", "token_lifespan",
                 "exact_supported"}
        unknown = sorted(set(options) - known)
        if unknown:
            raise RequestError(400, {"error": f"unknown config keys {unknown}; known keys are {sorted(known)}"})
        # Validate every key first, so that a bad request changes nothing.
        changes = {}
        if "latency_ms" in options:
            changes["latency_ms"] = bounded("latency_ms", 0, 600000) or 0
        if "failure" in options:
            failure = options["failure"]
            if failure is not None and str(failure) not in FAILURE_MODES:
                raise RequestError(400, {"error": f"failure must be null or one of {sorted(FAILURE_MODES)}"})
            changes["failure"] = None if failure is None else str(failure)
        if "failure_scope" in options:
            if options["failure_scope"] not in FAILURE_SCOPES:
                raise RequestError(400, {"error": f"failure_scope must be one of {sorted(FAILURE_SCOPES)}"})
            changes["failure_scope"] = options["failure_scope"]
        if "failure_count" in options:
            changes["failure_count"] = bounded("failure_count", 1, 1000000)
        if "failure_status" in options:
            changes["failure_status"] = bounded("failure_status", 200, 599) or 503
        if "token_lifespan" in options:
            changes["token_lifespan"] = bounded("token_lifespan", 1, 86400)
        if "exact_supported" in options:
            if not isinstance(options["exact_supported"], bool):
                raise RequestError(400, {"error": "exact_supported must be true or false"})
            changes["exact_supported"] = options["exact_supported"]
        directory = self.directory
        with directory.lock:
            for name, value in changes.items():
                setattr(directory, name, value)
            return directory.config_view()

    def change_users(self, options):
        directory = self.directory
        realm_name = options.get("realm") or next(iter(directory.realms))
        realm = directory.realms.get(realm_name)
        if realm is None:
            raise RequestError(404, {"error": f"unknown realm {realm_name!r}"})
        try:
            new_users = [User(realm.name, entry) for entry in options.get("upsert", [])]
        except (ValueError, AttributeError, TypeError) as error:
            raise RequestError(400, {"error": f"invalid user: {error}"})
        for user in new_users:
            realm.put_user(user)
        deleted = sum(1 for username in options.get("delete", []) if realm.delete_user(str(username)))
        return {"upserted": len(new_users), "deleted": deleted}


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
    parser = argparse.ArgumentParser(description="Keycloak-compatible development directory")
    parser.add_argument("--data", required=True, help="realm file (JSON, Keycloak realm export shape)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="TCP port; 0 picks a free one (default 0)")
    parser.add_argument("--token-lifespan", type=int, default=None,
                        help="access token lifespan in seconds (default: the realm's accessTokenLifespan, else 300)")
    parser.add_argument("--verbose", action="store_true", help="log each request to stderr")
    arguments = parser.parse_args()

    # A launcher may start this process with SIGTERM blocked or ignored (a
    # test runner's thread often blocks signals, and the mask is inherited),
    # which would make "kill PID" a no-op.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT})
    signal.signal(signal.SIGTERM, signal.SIG_DFL)

    directory = Directory(arguments.data, arguments.token_lifespan)
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
