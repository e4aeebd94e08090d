#define _GNU_SOURCE
#include "CShim.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

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
