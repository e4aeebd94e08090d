#define _GNU_SOURCE
#include "CShim.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <time.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

int mc_epoll_create(void) { return epoll_create1(EPOLL_CLOEXEC); }

static int mc_epoll_ctl(int epfd, int op, int fd, uint32_t events, uint64_t data) {
    struct epoll_event ev;
    memset(&ev, 0, sizeof ev);
    ev.events = events;
    ev.data.u64 = data;
    return epoll_ctl(epfd, op, fd, &ev);
}

int mc_epoll_ctl_add(int epfd, int fd, uint32_t events, uint64_t data) {
    return mc_epoll_ctl(epfd, EPOLL_CTL_ADD, fd, events, data);
}

int mc_epoll_ctl_mod(int epfd, int fd, uint32_t events, uint64_t data) {
    return mc_epoll_ctl(epfd, EPOLL_CTL_MOD, fd, events, data);
}

int mc_epoll_ctl_del(int epfd, int fd) { return epoll_ctl(epfd, EPOLL_CTL_DEL, fd, NULL); }

int mc_epoll_wait(int epfd, mc_epoll_event *out, int max, int timeout_ms) {
    struct epoll_event events[256];
    if (max > 256) max = 256;
    int n = epoll_wait(epfd, events, max, timeout_ms);
    for (int i = 0; i < n; i++) {
        out[i].events = events[i].events;
        out[i].data = events[i].data.u64;
    }
    return n;
}

int mc_eventfd(void) { return eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC); }

int mc_eventfd_signal(int fd) {
    uint64_t one = 1;
    ssize_t n = write(fd, &one, sizeof one);
    return n == sizeof one || errno == EAGAIN ? 0 : -1;
}

int mc_eventfd_drain(int fd) {
    uint64_t value;
    return read(fd, &value, sizeof value) == sizeof value ? 0 : -1;
}

int mc_accept_nonblocking(int fd, struct sockaddr *addr, socklen_t *len) {
    return accept4(fd, addr, len, SOCK_NONBLOCK | SOCK_CLOEXEC);
}

CURLcode mc_curl_setopt_long(CURL *curl, CURLoption option, long value) {
    return curl_easy_setopt(curl, option, value);
}

CURLcode mc_curl_setopt_pointer(CURL *curl, CURLoption option, void *value) {
    return curl_easy_setopt(curl, option, value);
}

CURLcode mc_curl_setopt_string(CURL *curl, CURLoption option, const char *value) {
    return curl_easy_setopt(curl, option, value);
}

CURLcode mc_curl_setopt_write_function(CURL *curl,
                                       size_t (*callback)(char *, size_t, size_t, void *)) {
    return curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, callback);
}

CURLcode mc_curl_getinfo_long(CURL *curl, CURLINFO info, long *value) {
    return curl_easy_getinfo(curl, info, value);
}

int mc_set_thread_name(pthread_t thread, const char *name) { return pthread_setname_np(thread, name); }

long mc_ssl_ctx_set_server_modes(SSL_CTX *ctx) {
    return SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER
                                     | SSL_MODE_RELEASE_BUFFERS);
}

int mc_ssl_ctx_set_min_proto_version(SSL_CTX *ctx, int version) {
    return (int)SSL_CTX_set_min_proto_version(ctx, version);
}

long mc_ssl_ctx_set_server_session_cache(SSL_CTX *ctx) {
    return SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
}

// --- Shared session ticket keys ---

typedef struct {
    size_t count;
    unsigned char keys[][MC_TICKET_KEY_LENGTH];
} mc_ticket_keys;

static int mc_ticket_keys_index = -1;
static pthread_once_t mc_ticket_keys_once = PTHREAD_ONCE_INIT;

static size_t mc_ticket_keys_size(size_t count) { return sizeof(mc_ticket_keys) + count * MC_TICKET_KEY_LENGTH; }

// Wipes the keys when their context is freed.
static void mc_ticket_keys_free(void *parent, void *pointer, CRYPTO_EX_DATA *data, int index, long argl, void *argp) {
    (void)parent, (void)data, (void)index, (void)argl, (void)argp;
    mc_ticket_keys *keys = pointer;
    if (keys != NULL) OPENSSL_clear_free(keys, mc_ticket_keys_size(keys->count));
}

static void mc_ticket_keys_make_index(void) {
    mc_ticket_keys_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, mc_ticket_keys_free);
}

// Sets up `cipher` and `mac` with `key`: AES-256-CBC with `iv`, HMAC-SHA256.
static int mc_ticket_key_use(const unsigned char *key, unsigned char *iv, EVP_CIPHER_CTX *cipher, EVP_MAC_CTX *mac,
                             int encrypt) {
    const unsigned char *aes = key + 16, *hmac = key + 48;
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, (void *)hmac, 32),
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
        OSSL_PARAM_construct_end(),
    };
    if (EVP_MAC_CTX_set_params(mac, params) != 1) return 0;
    if (encrypt) return EVP_EncryptInit_ex(cipher, EVP_aes_256_cbc(), NULL, aes, iv) == 1;
    return EVP_DecryptInit_ex(cipher, EVP_aes_256_cbc(), NULL, aes, iv) == 1;
}

// OpenSSL's ticket key callback. Encrypting: 1 with the first key, -1 on
// failure. Decrypting: 0 for an unknown name (a full handshake follows), -1
// on failure, 1 for the first key in TLS 1.2, and otherwise 2, so that
// OpenSSL sends a new ticket under the first key. TLS 1.3 always gets 2,
// because clients such as stunnel use each ticket once; OpenSSL's own keys
// renew every TLS 1.3 ticket too.
static int mc_ticket_key_callback(SSL *ssl, unsigned char *name, unsigned char *iv, EVP_CIPHER_CTX *cipher,
                                  EVP_MAC_CTX *mac, int encrypt) {
    const mc_ticket_keys *keys = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), mc_ticket_keys_index);
    if (keys == NULL || keys->count == 0) return -1;
    if (encrypt) {
        if (RAND_bytes(iv, 16) != 1) return -1;
        memcpy(name, keys->keys[0], 16);
        return mc_ticket_key_use(keys->keys[0], iv, cipher, mac, 1) ? 1 : -1;
    }
    for (size_t index = 0; index < keys->count; index++) {
        if (CRYPTO_memcmp(name, keys->keys[index], 16) != 0) continue;
        if (!mc_ticket_key_use(keys->keys[index], iv, cipher, mac, 0)) return -1;
        return index == 0 && SSL_version(ssl) != TLS1_3_VERSION ? 1 : 2;
    }
    return 0;
}

int mc_ssl_ctx_set_ticket_keys(SSL_CTX *ctx, const unsigned char *keys, size_t count) {
    pthread_once(&mc_ticket_keys_once, mc_ticket_keys_make_index);
    if (mc_ticket_keys_index < 0 || count == 0) return 0;
    mc_ticket_keys *copy = OPENSSL_malloc(mc_ticket_keys_size(count));
    if (copy == NULL) return 0;
    copy->count = count;
    memcpy(copy->keys, keys, count * MC_TICKET_KEY_LENGTH);
    // Freed with the context (mc_ticket_keys_free), or here when it cannot be attached.
    if (SSL_CTX_set_ex_data(ctx, mc_ticket_keys_index, copy) != 1) {
        OPENSSL_clear_free(copy, mc_ticket_keys_size(count));
        return 0;
    }
    return SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, mc_ticket_key_callback) == 1;
}

// --- Resumption bounded by the age of the full handshake ---

// A ticket's application data: a version byte, then the time of the full
// handshake, in seconds since 1970 as 8 bytes, most significant first.
enum { MC_AUTH_TIME_VERSION = 1, MC_AUTH_TIME_LENGTH = 9 };

// Called before OpenSSL encrypts a ticket. A session from a full handshake
// gets the time now. A resumed session keeps the time that came with its
// ticket, the time of its full handshake.
static int mc_ticket_generate(SSL *ssl, void *arg) {
    (void)arg;
    SSL_SESSION *session = SSL_get_session(ssl);
    if (session == NULL) return 0;
    void *data = NULL;
    size_t length = 0;
    if (SSL_session_reused(ssl) && SSL_SESSION_get0_ticket_appdata(session, &data, &length) == 1
        && length == MC_AUTH_TIME_LENGTH) {
        return 1;
    }
    unsigned char stamp[MC_AUTH_TIME_LENGTH];
    uint64_t now = (uint64_t)time(NULL);
    stamp[0] = MC_AUTH_TIME_VERSION;
    for (int index = 0; index < 8; index++) stamp[1 + index] = (unsigned char)(now >> (56 - 8 * index));
    return SSL_SESSION_set1_ticket_appdata(session, stamp, sizeof stamp);
}

// Called after OpenSSL decrypted (or failed to decrypt) a ticket. A ticket
// without a readable time, or whose full handshake lies more than the bound
// in `arg` (seconds) in the past, is not used: the client makes a full
// handshake and gets a new ticket.
static SSL_TICKET_RETURN mc_ticket_decrypted(SSL *ssl, SSL_SESSION *session, const unsigned char *name,
                                             size_t name_length, SSL_TICKET_STATUS status, void *arg) {
    (void)ssl, (void)name, (void)name_length;
    if (status != SSL_TICKET_SUCCESS && status != SSL_TICKET_SUCCESS_RENEW) return SSL_TICKET_RETURN_IGNORE_RENEW;
    void *data = NULL;
    size_t length = 0;
    if (session == NULL || SSL_SESSION_get0_ticket_appdata(session, &data, &length) != 1
        || length != MC_AUTH_TIME_LENGTH || ((const unsigned char *)data)[0] != MC_AUTH_TIME_VERSION) {
        return SSL_TICKET_RETURN_IGNORE_RENEW;
    }
    uint64_t stamp = 0;
    for (int index = 0; index < 8; index++) stamp = stamp << 8 | ((const unsigned char *)data)[1 + index];
    uint64_t now = (uint64_t)time(NULL);
    uint64_t max_age = (uint64_t)(intptr_t)arg;
    // A time in the future (beyond a minute of clock skew between instances) is not trusted either.
    if (stamp > now + 60 || (now > stamp && now - stamp > max_age)) return SSL_TICKET_RETURN_IGNORE_RENEW;
    return status == SSL_TICKET_SUCCESS_RENEW ? SSL_TICKET_RETURN_USE_RENEW : SSL_TICKET_RETURN_USE;
}

int mc_ssl_ctx_bound_resumption(SSL_CTX *ctx, long max_age_seconds) {
    if (max_age_seconds <= 0) return 0;
    SSL_CTX_set_timeout(ctx, max_age_seconds);
    return SSL_CTX_set_session_ticket_cb(ctx, mc_ticket_generate, mc_ticket_decrypted,
                                         (void *)(intptr_t)max_age_seconds);
}

uint64_t mc_ssl_ctx_set_server_options(SSL_CTX *ctx) {
    return SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION
                                        | SSL_OP_CIPHER_SERVER_PREFERENCE);
}

int mc_tls1_2_version(void) { return TLS1_2_VERSION; }
int mc_tls1_3_version(void) { return TLS1_3_VERSION; }

int mc_x509_san_count(X509 *cert, void **names) {
    GENERAL_NAMES *list = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
    *names = list;
    return list == NULL ? 0 : sk_GENERAL_NAME_num(list);
}

int mc_x509_san_entry(void *names, int index, const unsigned char **data, int *length) {
    const GENERAL_NAME *name = sk_GENERAL_NAME_value((GENERAL_NAMES *)names, index);
    *data = NULL;
    *length = 0;
    if (name == NULL) return 0;
    switch (name->type) {
    case GEN_DNS:
        *data = ASN1_STRING_get0_data(name->d.dNSName);
        *length = ASN1_STRING_length(name->d.dNSName);
        return 1;
    case GEN_URI:
        *data = ASN1_STRING_get0_data(name->d.uniformResourceIdentifier);
        *length = ASN1_STRING_length(name->d.uniformResourceIdentifier);
        return 2;
    case GEN_IPADD:
        *data = ASN1_STRING_get0_data(name->d.iPAddress);
        *length = ASN1_STRING_length(name->d.iPAddress);
        return 3;
    default:
        return 0;
    }
}

void mc_x509_san_free(void *names) {
    if (names != NULL) GENERAL_NAMES_free((GENERAL_NAMES *)names);
}

int mc_x509_common_name(X509 *cert, char *out, int capacity) {
    X509_NAME *subject = X509_get_subject_name(cert);
    int index = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
    if (index < 0) return -1;
    ASN1_STRING *value = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, index));
    int length = ASN1_STRING_length(value);
    if (length < 0 || length >= capacity) return -1;
    memcpy(out, ASN1_STRING_get0_data(value), (size_t)length);
    out[length] = 0;
    return length;
}

long long mc_x509_time(X509 *cert, int before) {
    const ASN1_TIME *time = before ? X509_get0_notBefore(cert) : X509_get0_notAfter(cert);
    struct tm parts;
    if (time == NULL || ASN1_TIME_to_tm(time, &parts) != 1) return -1;
    return (long long)timegm(&parts);
}

int mc_no_password(char *buffer, int size, int rwflag, void *userdata) {
    (void)buffer;
    (void)size;
    (void)rwflag;
    (void)userdata;
    return -1;
}
