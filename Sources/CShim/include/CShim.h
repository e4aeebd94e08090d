// Thin C wrappers for what Swift cannot import or call directly: epoll and
// eventfd (missing from Swift's Glibc module), accept4 (needs _GNU_SOURCE),
// libcurl's variadic setters, and OpenSSL's function-like macros. Each wrapper passes its arguments through
// unchanged and returns what the wrapped call returns. One piece has logic of its own: the session
// ticket callback, which OpenSSL calls with a cipher and a MAC context that Swift would have to set up
// through OSSL_PARAM arrays.
#ifndef MAILCLOAK_CSHIM_H
#define MAILCLOAK_CSHIM_H

#include <stddef.h>
#include <stdint.h>
#include <pthread.h>
#include <sys/socket.h>
#include <curl/curl.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

/// One ready event, unpacked from the kernel's packed `struct epoll_event`.
typedef struct {
    uint32_t events;
    uint64_t data;
} mc_epoll_event;

enum {
    MC_EPOLLIN = 0x001,
    MC_EPOLLOUT = 0x004,
    MC_EPOLLERR = 0x008,
    MC_EPOLLHUP = 0x010,
    MC_EPOLLRDHUP = 0x2000,
    MC_EPOLLEXCLUSIVE = 1u << 28,
    MC_EPOLLET = 1u << 31,
};

int mc_epoll_create(void);
int mc_epoll_ctl_add(int epfd, int fd, uint32_t events, uint64_t data);
int mc_epoll_ctl_mod(int epfd, int fd, uint32_t events, uint64_t data);
int mc_epoll_ctl_del(int epfd, int fd);
/// Waits up to `timeout_ms` and copies at most `max` events into `out`.
int mc_epoll_wait(int epfd, mc_epoll_event *out, int max, int timeout_ms);

int mc_eventfd(void);
int mc_eventfd_signal(int fd);
int mc_eventfd_drain(int fd);

/// accept4 with SOCK_NONBLOCK and SOCK_CLOEXEC.
int mc_accept_nonblocking(int fd, struct sockaddr *addr, socklen_t *len);

CURLcode mc_curl_setopt_long(CURL *curl, CURLoption option, long value);
CURLcode mc_curl_setopt_pointer(CURL *curl, CURLoption option, void *value);
CURLcode mc_curl_setopt_string(CURL *curl, CURLoption option, const char *value);
CURLcode mc_curl_setopt_write_function(CURL *curl,
                                       size_t (*callback)(char *, size_t, size_t, void *));
CURLcode mc_curl_getinfo_long(CURL *curl, CURLINFO info, long *value);

// OpenSSL: macros that Swift cannot call, and SAN access through a union.

/// Sets the modes mailcloak's servers use: partial writes, moving write
/// buffers (a retried write may come from a moved buffer) and released
/// buffers for idle connections.
long mc_ssl_ctx_set_server_modes(SSL_CTX *ctx);
/// Sets the lowest protocol version (TLS1_2_VERSION or TLS1_3_VERSION).
int mc_ssl_ctx_set_min_proto_version(SSL_CTX *ctx, int version);
/// Turns on the server session cache (session ids and tickets).
long mc_ssl_ctx_set_server_session_cache(SSL_CTX *ctx);
/// Bytes of one session ticket key: a 16-byte name, then a 32-byte AES-256
/// key that encrypts tickets and a 32-byte HMAC-SHA256 key that signs them.
enum { MC_TICKET_KEY_LENGTH = 80 };
/// Encrypts and checks session tickets with `count` keys of
/// MC_TICKET_KEY_LENGTH bytes each, copied from `keys`, instead of the random
/// keys OpenSSL makes for each context. The first key encrypts new tickets;
/// every key decrypts, and a ticket under any but the first is replaced by a
/// new one. Instances given the same keys resume each other's sessions.
/// Returns 1, or 0 when `count` is 0 or memory ran out.
int mc_ssl_ctx_set_ticket_keys(SSL_CTX *ctx, const unsigned char *keys, size_t count);
/// Bounds session resumption by the age of the full handshake, the one that
/// checked the client certificate. A ticket records that handshake's time and
/// keeps it through renewals. A ticket older than `max_age_seconds` makes the
/// client do a full handshake again. Also sets the session lifetime to
/// `max_age_seconds`. Returns 1, or 0 on failure.
int mc_ssl_ctx_bound_resumption(SSL_CTX *ctx, long max_age_seconds);
/// Sets options: no compression, no renegotiation, server cipher preference.
uint64_t mc_ssl_ctx_set_server_options(SSL_CTX *ctx);
/// Protocol version numbers, built from macros.
int mc_tls1_2_version(void);
int mc_tls1_3_version(void);
/// The number of subjectAltName entries of `cert`, or 0 when it has none.
/// `*names` receives the stack to pass to `mc_x509_san_entry` and `mc_x509_san_free`.
int mc_x509_san_count(X509 *cert, void **names);
/// Entry `index` of a SAN stack: 1 DNS, 2 URI, 3 IP address, 0 other; data and length out.
int mc_x509_san_entry(void *names, int index, const unsigned char **data, int *length);
void mc_x509_san_free(void *names);
/// The subject common name, copied into `out` (NUL-terminated); its length, or -1 when absent or too long.
int mc_x509_common_name(X509 *cert, char *out, int capacity);
/// Seconds since 1970 of the certificate's notAfter (or notBefore when `before` is non-zero), or -1.
long long mc_x509_time(X509 *cert, int before);
/// A callback for SSL_CTX_set_default_passwd_cb that gives no password, so an
/// encrypted key fails to load instead of prompting on the terminal.
int mc_no_password(char *buffer, int size, int rwflag, void *userdata);

/// Names a thread for ps and gdb; at most 15 bytes.
int mc_set_thread_name(pthread_t thread, const char *name);

#endif
