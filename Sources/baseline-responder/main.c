/*
 * baseline-responder: a benchmark baseline, not a policy server.
 *
 * It frames Postfix's two protocols and replies at once, with no decision:
 * a policy request (first byte a letter) gets "action=DUNNO\n\n" after its
 * blank line, and a socketmap netstring (first byte a digit) gets
 * "9:NOTFOUND ,". Measuring it with mailcloak-bench shows what the machine
 * and the load generator can do, so mailcloak's own figures can be read
 * against it.
 *
 * One thread per core (or THREADS), each with its own epoll loop and its own
 * listening socket bound with SO_REUSEPORT, so the kernel spreads new
 * connections over the threads. SO_REUSEPORT also lets a second process bind
 * the same port without an error, which is why it is only used here.
 *
 * With --tls it terminates mutual TLS with OpenSSL before framing: the
 * client must present a certificate that chains to CA, the handshake and all
 * I/O are non-blocking, and session tickets and the server session cache are
 * on, so resumed handshakes can be measured. It is the minimal mutual-TLS
 * server that mailcloak's TLS listener is compared against.
 *
 * Limits: policy lines up to 64 KiB, netstrings up to 100000 bytes, and 1 MiB
 * of unsent replies per connection. A connection that breaks a limit or a
 * framing rule is closed, and so is one idle for 60 s (in TLS mode also one
 * whose handshake fails).
 *
 * Usage: baseline-responder [--tls CERT KEY CA] HOST PORT [THREADS]
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_LINE_LENGTH 65536
#define MAX_NETSTRING_LENGTH 100000
#define MAX_PENDING_OUTPUT (1 << 20)
#define IDLE_TIMEOUT_SECONDS 60
#define MAX_EVENTS 256

static const char policy_reply[] = "action=DUNNO\n\n";
static const char socketmap_reply[] = "9:NOTFOUND ,";

enum frame_state {
    FRAME_START,       /* before the first byte of a request */
    POLICY_LINE,       /* inside a policy request */
    NETSTRING_LENGTH,  /* reading netstring length digits */
    NETSTRING_PAYLOAD, /* skipping the payload */
    NETSTRING_END,     /* expecting ',' */
};

struct connection {
    int fd;
    enum frame_state state;
    size_t line_length;   /* bytes in the current policy line, '\r' excluded */
    size_t remaining;     /* netstring length, then payload bytes still to skip */
    size_t length_digits;
    char *output;         /* replies not yet written */
    size_t output_length;
    size_t output_capacity;
    int wants_write;
    SSL *ssl;             /* NULL in plain mode */
    int handshake_done;
    time_t last_active;
    struct connection *prev, *next;
};

/* The server context in TLS mode, NULL in plain mode. Shared by the threads:
 * OpenSSL allows SSL_new on one configured context from many threads. */
static SSL_CTX *tls_context;

struct worker {
    const char *host;
    const char *port;
    int epoll_fd;
    int listen_fd;
    struct connection *connections; /* every open connection, for the idle sweep */
};

static void fatal(const char *what) {
    perror(what);
    exit(1);
}

static int open_listener(const char *host, const char *port) {
    struct addrinfo hints, *found, *candidate;
    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    int status = getaddrinfo(host, port, &hints, &found);
    if (status != 0) {
        fprintf(stderr, "baseline-responder: cannot resolve %s:%s: %s\n", host, port, gai_strerror(status));
        exit(1);
    }
    int fd = -1;
    for (candidate = found; candidate != NULL; candidate = candidate->ai_next) {
        fd = socket(candidate->ai_family, candidate->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) continue;
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
        if (bind(fd, candidate->ai_addr, candidate->ai_addrlen) == 0 && listen(fd, 4096) == 0) break;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(found);
    if (fd < 0) fatal("bind/listen");
    return fd;
}

static void close_connection(struct worker *worker, struct connection *conn) {
    if (conn->ssl != NULL) {
        if (conn->handshake_done) {
            ERR_clear_error();
            SSL_shutdown(conn->ssl);
        }
        ERR_clear_error();
        SSL_free(conn->ssl);
    }
    epoll_ctl(worker->epoll_fd, EPOLL_CTL_DEL, conn->fd, NULL);
    close(conn->fd);
    if (conn->prev) conn->prev->next = conn->next; else worker->connections = conn->next;
    if (conn->next) conn->next->prev = conn->prev;
    free(conn->output);
    free(conn);
}

/* Queues a reply; returns -1 when the peer has left too much unread. */
static int queue_reply(struct connection *conn, const char *reply, size_t length) {
    if (conn->output_length + length > MAX_PENDING_OUTPUT) return -1;
    if (conn->output_length + length > conn->output_capacity) {
        size_t capacity = conn->output_capacity ? conn->output_capacity * 2 : 4096;
        while (capacity < conn->output_length + length) capacity *= 2;
        char *grown = realloc(conn->output, capacity);
        if (grown == NULL) return -1;
        conn->output = grown;
        conn->output_capacity = capacity;
    }
    memcpy(conn->output + conn->output_length, reply, length);
    conn->output_length += length;
    return 0;
}

/* Runs the framing state machine over received bytes; returns -1 on a protocol error. */
static int consume(struct connection *conn, const unsigned char *bytes, size_t count) {
    for (size_t i = 0; i < count; i++) {
        unsigned char byte = bytes[i];
        switch (conn->state) {
        case FRAME_START:
            if ((byte | 0x20) >= 'a' && (byte | 0x20) <= 'z') {
                conn->state = POLICY_LINE;
                conn->line_length = 1;
            } else if (byte >= '0' && byte <= '9') {
                conn->state = NETSTRING_LENGTH;
                conn->remaining = byte - '0';
                conn->length_digits = 1;
            } else {
                return -1;
            }
            break;
        case POLICY_LINE:
            if (byte == '\n') {
                if (conn->line_length == 0) {
                    if (queue_reply(conn, policy_reply, sizeof policy_reply - 1) < 0) return -1;
                    conn->state = FRAME_START;
                } else {
                    conn->line_length = 0;
                }
            } else if (byte != '\r' && ++conn->line_length > MAX_LINE_LENGTH) {
                return -1;
            }
            break;
        case NETSTRING_LENGTH:
            if (byte == ':') {
                conn->state = conn->remaining > 0 ? NETSTRING_PAYLOAD : NETSTRING_END;
            } else if (byte >= '0' && byte <= '9' && conn->length_digits < 6) {
                conn->remaining = conn->remaining * 10 + (byte - '0');
                conn->length_digits++;
                if (conn->remaining > MAX_NETSTRING_LENGTH) return -1;
            } else {
                return -1;
            }
            break;
        case NETSTRING_PAYLOAD: {
            size_t skip = count - i < conn->remaining ? count - i : conn->remaining;
            conn->remaining -= skip;
            i += skip - 1;
            if (conn->remaining == 0) conn->state = NETSTRING_END;
            break;
        }
        case NETSTRING_END:
            if (byte != ',') return -1;
            if (queue_reply(conn, socketmap_reply, sizeof socketmap_reply - 1) < 0) return -1;
            conn->state = FRAME_START;
            break;
        }
    }
    return 0;
}

/* Writes queued replies; returns -1 when the connection failed. */
static int flush_output(struct worker *worker, struct connection *conn) {
    size_t sent = 0;
    while (sent < conn->output_length) {
        ssize_t n = send(conn->fd, conn->output + sent, conn->output_length - sent, MSG_NOSIGNAL);
        if (n > 0) {
            sent += (size_t)n;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            break;
        } else {
            return -1;
        }
    }
    memmove(conn->output, conn->output + sent, conn->output_length - sent);
    conn->output_length -= sent;

    int wants_write = conn->output_length > 0;
    if (wants_write != conn->wants_write) {
        struct epoll_event event = {.events = EPOLLIN | (wants_write ? EPOLLOUT : 0), .data.ptr = conn};
        epoll_ctl(worker->epoll_fd, EPOLL_CTL_MOD, conn->fd, &event);
        conn->wants_write = wants_write;
    }
    return 0;
}

/* Sets the epoll interest of a connection. */
static void set_interest(struct worker *worker, struct connection *conn, int wants_write) {
    if (wants_write == conn->wants_write) return;
    struct epoll_event event = {.events = EPOLLIN | (wants_write ? EPOLLOUT : 0), .data.ptr = conn};
    epoll_ctl(worker->epoll_fd, EPOLL_CTL_MOD, conn->fd, &event);
    conn->wants_write = wants_write;
}

/* Writes queued replies through TLS; returns -1 when the connection failed.
 * Waits for writability only when OpenSSL asks for it. */
static int flush_tls_output(struct worker *worker, struct connection *conn) {
    size_t sent = 0;
    int wants_write = 0;
    while (sent < conn->output_length) {
        size_t chunk = conn->output_length - sent;
        if (chunk > INT32_MAX) chunk = INT32_MAX;
        ERR_clear_error();
        int n = SSL_write(conn->ssl, conn->output + sent, (int)chunk);
        if (n > 0) {
            sent += (size_t)n;
            continue;
        }
        int code = SSL_get_error(conn->ssl, n);
        if (code == SSL_ERROR_WANT_WRITE) {
            wants_write = 1;
            break;
        }
        if (code == SSL_ERROR_WANT_READ) break;
        return -1;
    }
    memmove(conn->output, conn->output + sent, conn->output_length - sent);
    conn->output_length -= sent;
    set_interest(worker, conn, wants_write);
    return 0;
}

/* Advances a TLS connection on any readiness: the handshake, then every
 * record OpenSSL can decrypt (until WANT_READ, because records it has
 * buffered raise no further epoll event), then the replies. */
static void handle_tls(struct worker *worker, struct connection *conn) {
    conn->last_active = time(NULL);
    if (!conn->handshake_done) {
        ERR_clear_error();
        int result = SSL_do_handshake(conn->ssl);
        if (result != 1) {
            int code = SSL_get_error(conn->ssl, result);
            if (code == SSL_ERROR_WANT_READ) {
                set_interest(worker, conn, 0);
            } else if (code == SSL_ERROR_WANT_WRITE) {
                set_interest(worker, conn, 1);
            } else {
                close_connection(worker, conn);
            }
            return;
        }
        conn->handshake_done = 1;
    }
    unsigned char buffer[16384];
    for (;;) {
        ERR_clear_error();
        int n = SSL_read(conn->ssl, buffer, sizeof buffer);
        if (n > 0) {
            if (consume(conn, buffer, (size_t)n) < 0) {
                close_connection(worker, conn);
                return;
            }
            continue;
        }
        int code = SSL_get_error(conn->ssl, n);
        if (code == SSL_ERROR_WANT_READ) break;
        if (code == SSL_ERROR_WANT_WRITE) {
            set_interest(worker, conn, 1);
            break;
        }
        /* A clean close_notify, a reset, or a protocol error. */
        close_connection(worker, conn);
        return;
    }
    if (flush_tls_output(worker, conn) < 0) close_connection(worker, conn);
}

static void handle_readable(struct worker *worker, struct connection *conn) {
    unsigned char buffer[16384];
    for (;;) {
        ssize_t n = recv(conn->fd, buffer, sizeof buffer, 0);
        if (n > 0) {
            if (consume(conn, buffer, (size_t)n) < 0) {
                close_connection(worker, conn);
                return;
            }
            if ((size_t)n < sizeof buffer) break;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            break;
        } else {
            close_connection(worker, conn);
            return;
        }
    }
    conn->last_active = time(NULL);
    if (flush_output(worker, conn) < 0) close_connection(worker, conn);
}

static void accept_connections(struct worker *worker) {
    for (;;) {
        int fd = accept4(worker->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            /* EAGAIN ends the batch; EMFILE and the like wait for the next event. */
            return;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct connection *conn = calloc(1, sizeof *conn);
        if (conn == NULL) {
            close(fd);
            continue;
        }
        conn->fd = fd;
        conn->last_active = time(NULL);
        conn->next = worker->connections;
        if (conn->next) conn->next->prev = conn;
        worker->connections = conn;
        if (tls_context != NULL) {
            ERR_clear_error();
            conn->ssl = SSL_new(tls_context);
            if (conn->ssl == NULL || SSL_set_fd(conn->ssl, fd) != 1) {
                close_connection(worker, conn);
                continue;
            }
            SSL_set_accept_state(conn->ssl);
        }
        struct epoll_event event = {.events = EPOLLIN, .data.ptr = conn};
        if (epoll_ctl(worker->epoll_fd, EPOLL_CTL_ADD, fd, &event) < 0) close_connection(worker, conn);
    }
}

static void close_idle_connections(struct worker *worker) {
    time_t now = time(NULL);
    struct connection *conn = worker->connections;
    while (conn != NULL) {
        struct connection *next = conn->next;
        if (now - conn->last_active > IDLE_TIMEOUT_SECONDS) close_connection(worker, conn);
        conn = next;
    }
}

static void *run_worker(void *argument) {
    struct worker *worker = argument;
    struct epoll_event events[MAX_EVENTS];
    time_t last_sweep = time(NULL);
    for (;;) {
        int ready = epoll_wait(worker->epoll_fd, events, MAX_EVENTS, 1000);
        if (ready < 0 && errno != EINTR) fatal("epoll_wait");
        for (int i = 0; i < ready; i++) {
            if (events[i].data.ptr == NULL) {
                accept_connections(worker);
                continue;
            }
            struct connection *conn = events[i].data.ptr;
            if (conn->ssl != NULL && !(events[i].events & EPOLLERR)) {
                /* EPOLLHUP too: SSL_read reports the close after the last records. */
                handle_tls(worker, conn);
            } else if (events[i].events & (EPOLLERR | EPOLLHUP)) {
                close_connection(worker, conn);
            } else if (events[i].events & EPOLLIN) {
                handle_readable(worker, conn);
            } else if (events[i].events & EPOLLOUT) {
                if (flush_output(worker, conn) < 0) close_connection(worker, conn);
            }
        }
        if (time(NULL) - last_sweep >= 1) {
            close_idle_connections(worker);
            last_sweep = time(NULL);
        }
    }
    return NULL;
}

/* Prints OpenSSL's error queue after `what` and exits. */
static void tls_fatal(const char *what, const char *path) {
    fprintf(stderr, "baseline-responder: %s %s failed:\n", what, path);
    ERR_print_errors_fp(stderr);
    exit(1);
}

/* Builds the mutual-TLS server context: the server chain and key, client
 * certificates required and verified against the CA file, session tickets
 * and the server session cache on (OpenSSL's defaults, set here on purpose). */
static SSL_CTX *load_tls_context(const char *certificate, const char *key, const char *ca) {
    SSL_CTX *context = SSL_CTX_new(TLS_server_method());
    if (context == NULL) tls_fatal("SSL_CTX_new", "");
    SSL_CTX_set_min_proto_version(context, TLS1_2_VERSION);
    SSL_CTX_set_mode(context, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_options(context, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_clear_options(context, SSL_OP_NO_TICKET);
    if (SSL_CTX_use_certificate_chain_file(context, certificate) != 1) tls_fatal("loading certificate", certificate);
    if (SSL_CTX_use_PrivateKey_file(context, key, SSL_FILETYPE_PEM) != 1) tls_fatal("loading key", key);
    if (SSL_CTX_check_private_key(context) != 1) tls_fatal("matching key", key);
    if (SSL_CTX_load_verify_locations(context, ca, NULL) != 1) tls_fatal("loading CA", ca);
    STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(ca);
    if (names != NULL) SSL_CTX_set_client_CA_list(context, names);
    SSL_CTX_set_verify(context, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    static const unsigned char session_id_context[] = "baseline-responder";
    SSL_CTX_set_session_id_context(context, session_id_context, sizeof session_id_context - 1);
    SSL_CTX_set_session_cache_mode(context, SSL_SESS_CACHE_SERVER);
    return context;
}

int main(int argc, char **argv) {
    if (argc >= 5 && strcmp(argv[1], "--tls") == 0) {
        tls_context = load_tls_context(argv[2], argv[3], argv[4]);
        argv[4] = argv[0];
        argv += 4;
        argc -= 4;
    }
    if (argc < 3 || argc > 4) {
        fprintf(stderr, "usage: baseline-responder [--tls CERT KEY CA] HOST PORT [THREADS]\n");
        return 2;
    }
    long threads = argc == 4 ? strtol(argv[3], NULL, 10) : sysconf(_SC_NPROCESSORS_ONLN);
    if (threads < 1 || threads > 1024) {
        fprintf(stderr, "baseline-responder: THREADS must be 1 to 1024\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);

    pthread_t *ids = calloc((size_t)threads, sizeof *ids);
    struct worker *workers = calloc((size_t)threads, sizeof *workers);
    if (ids == NULL || workers == NULL) fatal("calloc");
    for (long i = 0; i < threads; i++) {
        struct worker *worker = &workers[i];
        worker->host = argv[1];
        worker->port = argv[2];
        worker->listen_fd = open_listener(argv[1], argv[2]);
        worker->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
        if (worker->epoll_fd < 0) fatal("epoll_create1");
        struct epoll_event event = {.events = EPOLLIN, .data.ptr = NULL};
        if (epoll_ctl(worker->epoll_fd, EPOLL_CTL_ADD, worker->listen_fd, &event) < 0) fatal("epoll_ctl");
    }
    fprintf(stderr, "baseline-responder: listening on %s:%s with %ld threads%s\n", argv[1], argv[2], threads,
            tls_context != NULL ? ", mutual TLS" : "");
    for (long i = 0; i < threads; i++) {
        if (pthread_create(&ids[i], NULL, run_worker, &workers[i]) != 0) fatal("pthread_create");
    }
    for (long i = 0; i < threads; i++) pthread_join(ids[i], NULL);
    return 0;
}
