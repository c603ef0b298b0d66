/*
 * The host board: the device runtime as a native program whose "UART" is stdin/stdout.
 * The host side runs it with project_api.rpc.transport.SubprocessTransport.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>

#include "mtp_platform.h"
#include "mtp_rpc.h"

void mtp_platform_write(const uint8_t *data, size_t len) {
  while (len > 0) {
    ssize_t n = write(STDOUT_FILENO, data, len);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        /* stdout may share stdin's non-blocking file (a socket or a tty): wait until writable */
        struct pollfd pfd;
        pfd.fd = STDOUT_FILENO;
        pfd.events = POLLOUT;
        pfd.revents = 0;
        poll(&pfd, 1, -1);
        continue;
      }
      _exit(0); /* the host went away; nobody is left to answer */
    }
    data += n;
    len -= (size_t)n;
  }
}

int mtp_platform_read(uint8_t *buf, size_t cap) {
  struct pollfd pfd;
  /* stdin is non-blocking: take what is there with one call; only when nothing is, wait a
   * little in poll() so an idle server sleeps instead of spinning. */
  ssize_t n = read(STDIN_FILENO, buf, cap);
  if (n > 0) return (int)n;
  if (n == 0) return -1; /* EOF: the host closed our stdin */
  if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) return -1;
  pfd.fd = STDIN_FILENO;
  pfd.events = POLLIN;
  pfd.revents = 0;
  if (poll(&pfd, 1, 100) <= 0) return 0;
  n = read(STDIN_FILENO, buf, cap);
  if (n > 0) return (int)n;
  if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) return 0;
  return -1;
}

uint64_t mtp_platform_timer_ticks(void) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec;
}

uint32_t mtp_platform_timer_hz(void) { return 1000000000u; }

int mtp_platform_timer_is_cycles(void) { return 0; }

int main(void) {
  int stdin_flags = fcntl(STDIN_FILENO, F_GETFL);
  /* A write to a closed pipe must end the program through the check above, not a signal. */
  signal(SIGPIPE, SIG_IGN);
  fcntl(STDIN_FILENO, F_SETFL, stdin_flags | O_NONBLOCK);
  mtp_rpc_server_run();
  fcntl(STDIN_FILENO, F_SETFL, stdin_flags); /* a terminal we ran in stays as it was */
  return 0;
}
