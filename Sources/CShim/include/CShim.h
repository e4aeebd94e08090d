// Thin C wrappers for what Swift cannot import or call directly: epoll and
// eventfd (missing from Swift's Glibc module), accept4 (needs _GNU_SOURCE),
// and libcurl's variadic setters. Each wrapper passes its arguments through
// unchanged and returns what the wrapped call returns.
#ifndef MAILCLOAK_CSHIM_H
#define MAILCLOAK_CSHIM_H

#include <stdint.h>
#include <pthread.h>
#include <sys/socket.h>
#include <curl/curl.h>

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

/// Names a thread for ps and gdb; at most 15 bytes.
int mc_set_thread_name(pthread_t thread, const char *name);

#endif
