/*
 * The protocol's checksums: CRC-16/CCITT-FALSE for frames (docs/rpc-protocol.md, "Framing") and
 * zlib's CRC-32 for command messages ("Commands").
 */
#ifndef MTP_CRC_H_
#define MTP_CRC_H_

#include <stddef.h>
#include <stdint.h>

#include "mtp_rpc.h"

uint16_t mtp_crc16_update(uint16_t crc, uint8_t byte);
/* Continues `crc` (0xFFFF to start) over data. */
uint16_t mtp_crc16(uint16_t crc, const uint8_t *data, size_t len);
uint32_t mtp_crc32(const uint8_t *data, size_t len);

#endif /* MTP_CRC_H_ */
