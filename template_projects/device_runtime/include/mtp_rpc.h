/*
 * The device side of host-driven inference (docs/rpc-protocol.md): framing and sessions
 * byte-compatible with microTVM, and our command layer above them. A template's main()
 * initialises its hardware and calls mtp_rpc_server_run().
 */
#ifndef MTP_RPC_H_
#define MTP_RPC_H_

#ifdef __cplusplus
extern "C" {
#endif

/* Three kinds of device size the defaults below: AVR (a few KiB of RAM), other microcontrollers,
 * and programs on an operating system (the host board), which have RAM and stack to spare and
 * links fast enough that per-byte work and system calls, not the link, would bound the speed. */
#if !defined(__AVR__) && (defined(__unix__) || defined(__APPLE__) || defined(_WIN32))
#define MTP_HOSTED 1
#else
#define MTP_HOSTED 0
#endif

/* Largest packet payload (session header + command message) the device receives or sends.
 * Two buffers of this size are the runtime's main RAM use. Override with -DMTP_MAX_PACKET=N
 * (at least 64; the host board's Makefile sets 65536). */
#ifndef MTP_MAX_PACKET
#if defined(__AVR__)
#define MTP_MAX_PACKET 256
#else
#define MTP_MAX_PACKET 4096
#endif
#endif

/* Bytes the framer collects before one mtp_platform_write call (stack use of a send). Hosted: a
 * whole packet, so a reply leaves in one write. */
#ifndef MTP_WRITE_CHUNK
#if defined(__AVR__)
#define MTP_WRITE_CHUNK 16
#elif MTP_HOSTED
#define MTP_WRITE_CHUNK (MTP_MAX_PACKET + 16)
#else
#define MTP_WRITE_CHUNK 128
#endif
#endif

/* Bytes requested per mtp_platform_read call (stack use of the receive loop). */
#ifndef MTP_READ_CHUNK
#if defined(__AVR__)
#define MTP_READ_CHUNK 16
#elif MTP_HOSTED
#define MTP_READ_CHUNK 65536
#else
#define MTP_READ_CHUNK 512
#endif
#endif

/* Entries per checksum table (src/mtp_crc.c): 16 (4 bits a step, 96 bytes: AVR, whose const
 * tables sit in RAM), 256 (a byte a step, 1.5 KiB of flash: microcontrollers), 2048 (8 bytes a
 * step, 12 KiB of RAM built on first use: hosted). */
#ifndef MTP_CRC_TABLES
#if defined(__AVR__)
#define MTP_CRC_TABLES 16
#elif MTP_HOSTED
#define MTP_CRC_TABLES 2048
#else
#define MTP_CRC_TABLES 256
#endif
#endif

/* Serves host requests until mtp_platform_read() reports the link closed. */
void mtp_rpc_server_run(void);

/* Sends a line of text to the host on the session's log channel (shown by the host's logger).
 * Call it from the main thread only (not from an interrupt handler). */
void mtp_log(const char *message);

#ifdef __cplusplus
}
#endif

#endif /* MTP_RPC_H_ */
