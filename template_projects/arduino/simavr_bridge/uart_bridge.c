/*
 * mtp_simavr_bridge: runs an AVR firmware on libsimavr with its UART0 bridged to one TCP client
 * on 127.0.0.1, so host tools talk to the emulated board as to a serial port (pyserial
 * "socket://127.0.0.1:PORT"). Built on demand by project_api/emulators/simavr.py with the host gcc
 * (-lsimavr -lsimavrparts).
 *
 *   mtp_simavr_bridge -m atmega2560 -f 16000000 [-p PORT] firmware.elf
 *       Listens, prints "port N" on stdout, and starts the simulation only once the client is
 *       connected and ready (so no byte the firmware prints at boot is lost). Runs until the client hangs up,
 *       SIGTERM/SIGINT, or the firmware stops; then prints "cycles N" on stderr and exits.
 *   mtp_simavr_bridge -m atmega2560 -f 16000000 -r CYCLES [-o OUT] firmware.elf
 *       Headless: runs CYCLES cycles, writes the UART output to OUT (if given) and exits
 *       0 when the firmware is still alive (or stopped cleanly), 3 when it crashed.
 *
 * Why not simavr's uart_pty part: it publishes a shared /tmp/simavr-uart0 symlink that parallel
 * runs overwrite, and its stop function kills the process.
 *
 * Input respects the UART's flow control: simavr's UART has a small receive FIFO and raises XOFF
 * when it is full (bytes sent then are dropped) and XON when there is room again. It also drops
 * bytes while the firmware has not enabled the receiver, so nothing is fed before RXEN is set.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

#include <simavr/avr_uart.h>
#include <simavr/sim_avr.h>
#include <simavr/sim_elf.h>
#include <simavr/sim_io.h>
#include <simavr/sim_irq.h>

enum { EXIT_USAGE = 2, EXIT_CRASHED = 3, EXIT_IO = 4 };

/* Instructions run between two looks at the socket: small enough for sub-millisecond latency,
 * large enough that the system calls cost little next to the simulation. */
#define POLL_EVERY_INSTRUCTIONS 1024u

/* How long the simulation waits after the host connects, unless the host writes first. */
#define START_GRACE_MS 200

#define HOST_TO_AVR_CAP 4096u
#define AVR_TO_HOST_CAP 4096u

static volatile sig_atomic_t stop_requested;

static struct {
  avr_t *avr;
  avr_uart_t *uart;          /* UART0 of the simulated MCU */
  avr_irq_t *input_irq;      /* raise with a byte to send it to the firmware */
  int xoff;                  /* the UART's receive FIFO is full: hold input */
  uint8_t to_avr[HOST_TO_AVR_CAP];
  size_t to_avr_head, to_avr_len;
  uint8_t to_host[AVR_TO_HOST_CAP];
  size_t to_host_len;
  int client_fd;             /* -1 in headless mode */
  FILE *headless_out;
} bridge = {.client_fd = -1};

static void on_signal(int sig) {
  (void)sig;
  stop_requested = 1;
}

static void flush_to_host(void);

static void on_uart_output(struct avr_irq_t *irq, uint32_t value, void *param) {
  (void)irq;
  (void)param;
  if (bridge.to_host_len == AVR_TO_HOST_CAP) flush_to_host();
  bridge.to_host[bridge.to_host_len++] = (uint8_t)value;
}

static int receiver_enabled(void) {
  return bridge.uart != NULL && avr_regbit_get(bridge.avr, bridge.uart->rxen);
}

/* Hand queued host bytes to the UART until its FIFO reports full (XOFF, raised re-entrantly from
 * inside avr_raise_irq) or the queue is empty. */
static void feed_uart(void) {
  while (!bridge.xoff && bridge.to_avr_len > 0 && receiver_enabled()) {
    uint8_t byte = bridge.to_avr[bridge.to_avr_head];
    bridge.to_avr_head = (bridge.to_avr_head + 1) % HOST_TO_AVR_CAP;
    bridge.to_avr_len--;
    avr_raise_irq(bridge.input_irq, byte);
  }
}

static void on_uart_xon(struct avr_irq_t *irq, uint32_t value, void *param) {
  (void)irq;
  (void)param;
  if (value) {
    bridge.xoff = 0;
    feed_uart();
  }
}

static void on_uart_xoff(struct avr_irq_t *irq, uint32_t value, void *param) {
  (void)irq;
  (void)param;
  bridge.xoff = value != 0;
}

static void flush_to_host(void) {
  size_t sent = 0;
  if (bridge.to_host_len == 0) return;
  if (bridge.client_fd < 0) {
    if (bridge.headless_out) fwrite(bridge.to_host, 1, bridge.to_host_len, bridge.headless_out);
    bridge.to_host_len = 0;
    return;
  }
  while (sent < bridge.to_host_len) {
    ssize_t n = send(bridge.client_fd, bridge.to_host + sent, bridge.to_host_len - sent, MSG_NOSIGNAL);
    if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) {
      fd_set writable;
      FD_ZERO(&writable);
      FD_SET(bridge.client_fd, &writable);
      if (stop_requested) break;
      select(bridge.client_fd + 1, NULL, &writable, NULL, NULL);
      continue;
    }
    if (n <= 0) {
      stop_requested = 1; /* the client is gone */
      break;
    }
    sent += (size_t)n;
  }
  bridge.to_host_len = 0;
}

/* Moves what the client has sent into the queue; returns 0 when the client hung up. */
static int poll_client(void) {
  while (bridge.to_avr_len < HOST_TO_AVR_CAP) {
    size_t tail = (bridge.to_avr_head + bridge.to_avr_len) % HOST_TO_AVR_CAP;
    size_t room = HOST_TO_AVR_CAP - bridge.to_avr_len;
    if (room > HOST_TO_AVR_CAP - tail) room = HOST_TO_AVR_CAP - tail;
    ssize_t n = recv(bridge.client_fd, bridge.to_avr + tail, room, MSG_DONTWAIT);
    if (n > 0) {
      bridge.to_avr_len += (size_t)n;
      continue;
    }
    if (n == 0) return 0;
    if (errno == EINTR) continue;
    return errno == EAGAIN || errno == EWOULDBLOCK;
  }
  return 1;
}

static avr_uart_t *find_uart0(avr_t *avr) {
  avr_io_t *io;
  for (io = avr->io_port; io != NULL; io = io->next) {
    if (io->kind != NULL && strcmp(io->kind, "uart") == 0 && ((avr_uart_t *)io)->name == '0')
      return (avr_uart_t *)io;
  }
  return NULL;
}

static int listen_and_accept(int port, int announce_fd) {
  struct sockaddr_in addr;
  socklen_t addr_len = sizeof addr;
  int one = 1;
  int listener = socket(AF_INET, SOCK_STREAM, 0);
  if (listener < 0) return -1;
  setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  memset(&addr, 0, sizeof addr);
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons((uint16_t)port);
  if (bind(listener, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(listener, 1) < 0 ||
      getsockname(listener, (struct sockaddr *)&addr, &addr_len) < 0) {
    close(listener);
    return -1;
  }
  dprintf(announce_fd, "port %d\n", ntohs(addr.sin_port));
  close(announce_fd);
  int client = -1;
  while (client < 0 && !stop_requested) {
    client = accept(listener, NULL, NULL);
    if (client < 0 && errno != EINTR) break;
  }
  close(listener);
  if (client >= 0) {
    struct pollfd first_byte = {client, POLLIN, 0};
    setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    /* pyserial's socket:// open() discards whatever arrives before it returns, so boot output
     * sent at once would be lost: start when the host first writes, or after a grace period. */
    poll(&first_byte, 1, START_GRACE_MS);
  }
  return client;
}

static void usage(const char *argv0) {
  fprintf(stderr,
          "usage: %s -m MCU -f HZ [-p PORT] FIRMWARE.elf\n"
          "       %s -m MCU -f HZ -r CYCLES [-o OUT] FIRMWARE.elf\n",
          argv0, argv0);
}

int main(int argc, char **argv) {
  const char *mcu = NULL, *out_path = NULL;
  unsigned long frequency = 0;
  unsigned long long headless_cycles = 0;
  int port = 0, opt, status = 0;

  while ((opt = getopt(argc, argv, "m:f:p:r:o:")) != -1) {
    switch (opt) {
      case 'm': mcu = optarg; break;
      case 'f': frequency = strtoul(optarg, NULL, 0); break;
      case 'p': port = atoi(optarg); break;
      case 'r': headless_cycles = strtoull(optarg, NULL, 0); break;
      case 'o': out_path = optarg; break;
      default: usage(argv[0]); return EXIT_USAGE;
    }
  }
  if (mcu == NULL || frequency == 0 || optind != argc - 1) {
    usage(argv[0]);
    return EXIT_USAGE;
  }
#ifdef __linux__
  /* Whoever started the simulator may die without stopping it; never outlive it. */
  prctl(PR_SET_PDEATHSIG, SIGTERM);
#endif
  /* No SA_RESTART: a stop request must interrupt a blocking accept() or select(). */
  struct sigaction stop_action;
  memset(&stop_action, 0, sizeof stop_action);
  stop_action.sa_handler = on_signal;
  sigemptyset(&stop_action.sa_mask);
  sigaction(SIGTERM, &stop_action, NULL);
  sigaction(SIGINT, &stop_action, NULL);
  signal(SIGPIPE, SIG_IGN);

  /* libsimavr prints notes with printf; keep stdout for the port announcement only. */
  int announce_fd = dup(STDOUT_FILENO);
  dup2(STDERR_FILENO, STDOUT_FILENO);
  setvbuf(stdout, NULL, _IONBF, 0);

  elf_firmware_t firmware;
  memset(&firmware, 0, sizeof firmware);
  if (elf_read_firmware(argv[optind], &firmware) != 0) {
    fprintf(stderr, "mtp_simavr_bridge: cannot read firmware %s\n", argv[optind]);
    return EXIT_USAGE;
  }
  snprintf(firmware.mmcu, sizeof firmware.mmcu, "%s", mcu);
  firmware.frequency = (uint32_t)frequency;
  bridge.avr = avr_make_mcu_by_name(mcu);
  if (bridge.avr == NULL) {
    fprintf(stderr, "mtp_simavr_bridge: simavr does not know MCU '%s'\n", mcu);
    return EXIT_USAGE;
  }
  avr_init(bridge.avr);
  bridge.avr->log = LOG_ERROR;
  avr_load_firmware(bridge.avr, &firmware);

  uint32_t uart_flags = 0; /* no stdio echo, no poll-sleep: bytes are ours, timing deterministic */
  avr_ioctl(bridge.avr, AVR_IOCTL_UART_SET_FLAGS('0'), &uart_flags);
  bridge.uart = find_uart0(bridge.avr);
  bridge.input_irq = avr_io_getirq(bridge.avr, AVR_IOCTL_UART_GETIRQ('0'), UART_IRQ_INPUT);
  avr_irq_register_notify(avr_io_getirq(bridge.avr, AVR_IOCTL_UART_GETIRQ('0'), UART_IRQ_OUTPUT),
                          on_uart_output, NULL);
  avr_irq_register_notify(avr_io_getirq(bridge.avr, AVR_IOCTL_UART_GETIRQ('0'), UART_IRQ_OUT_XON),
                          on_uart_xon, NULL);
  avr_irq_register_notify(avr_io_getirq(bridge.avr, AVR_IOCTL_UART_GETIRQ('0'), UART_IRQ_OUT_XOFF),
                          on_uart_xoff, NULL);
  if (bridge.uart == NULL || bridge.input_irq == NULL) {
    fprintf(stderr, "mtp_simavr_bridge: MCU '%s' has no UART0\n", mcu);
    return EXIT_USAGE;
  }

  if (headless_cycles == 0) {
    bridge.client_fd = listen_and_accept(port, announce_fd);
    if (bridge.client_fd < 0) {
      if (stop_requested) return 0;
      perror("mtp_simavr_bridge: listen/accept on 127.0.0.1");
      return EXIT_IO;
    }
  } else {
    close(announce_fd);
    if (out_path != NULL && (bridge.headless_out = fopen(out_path, "wb")) == NULL) {
      perror(out_path);
      return EXIT_IO;
    }
  }

  int state = cpu_Running;
  while (!stop_requested) {
    unsigned i;
    for (i = 0; i < POLL_EVERY_INSTRUCTIONS; i++) {
      state = avr_run(bridge.avr);
      if (state == cpu_Done || state == cpu_Crashed) break;
    }
    flush_to_host();
    if (state == cpu_Done || state == cpu_Crashed) break;
    if (headless_cycles != 0) {
      if (bridge.avr->cycle >= headless_cycles) break;
      continue;
    }
    if (!poll_client()) break;
    feed_uart();
  }
  flush_to_host();
  if (state == cpu_Crashed) {
    fprintf(stderr, "mtp_simavr_bridge: the firmware crashed at cycle %llu (pc 0x%x)\n",
            (unsigned long long)bridge.avr->cycle, (unsigned)bridge.avr->pc);
    status = EXIT_CRASHED;
  }
  fprintf(stderr, "cycles %llu\n", (unsigned long long)bridge.avr->cycle);
  if (bridge.headless_out) fclose(bridge.headless_out);
  if (bridge.client_fd >= 0) close(bridge.client_fd);
  avr_terminate(bridge.avr);
  return status;
}
