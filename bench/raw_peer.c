/*
 * The raw peer of bench/rpc.py: the same link and the same exchanges as the RPC, without any
 * protocol. `raw_peer REQUEST REPLY` reads REQUEST bytes from stdin, then writes REPLY bytes to
 * stdout, and again, until stdin ends. The bench sends exactly the bytes an RPC request of the
 * same size would carry and waits for the reply of the RPC's size, so both sides pay the same
 * system calls, copies and wake-ups per round trip: what differs is only the protocol's work.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static unsigned char buffer[1 << 20];

static int write_all(size_t len) {
  size_t done = 0;
  while (done < len) {
    size_t piece = len - done < sizeof(buffer) ? len - done : sizeof(buffer);
    ssize_t n = write(STDOUT_FILENO, buffer, piece);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return -1;
    done += (size_t)n;
  }
  return 0;
}

int main(int argc, char **argv) {
  size_t request, reply, got = 0;
  if (argc != 3) {
    fprintf(stderr, "usage: raw_peer REQUEST_BYTES REPLY_BYTES\n");
    return 2;
  }
  request = strtoul(argv[1], NULL, 10);
  reply = strtoul(argv[2], NULL, 10);
  signal(SIGPIPE, SIG_IGN);
  memset(buffer, 0x5A, sizeof(buffer));
  for (;;) {
    size_t want = request - got < sizeof(buffer) ? request - got : sizeof(buffer);
    ssize_t n = read(STDIN_FILENO, buffer, want);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return 0;
    got += (size_t)n;
    if (got == request) {
      got = 0;
      if (write_all(reply) != 0) return 0;
    }
  }
}
