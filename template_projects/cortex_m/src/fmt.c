#include "fmt.h"

#include "board.h"

static const char kDigits[16] = {'0', '1', '2', '3', '4', '5', '6', '7',
                                 '8', '9', 'a', 'b', 'c', 'd', 'e', 'f'};

void fmt_str(const char *text) {
  while (*text) uart_putc((uint8_t)*text++);
}

void fmt_hex(uint32_t value) {
  int shift = 28;
  while (shift > 0 && (value >> shift) == 0) shift -= 4;
  for (; shift >= 0; shift -= 4) uart_putc((uint8_t)kDigits[(value >> shift) & 0xFu]);
}

void fmt_hex64(uint64_t value) {
  uint32_t high = (uint32_t)(value >> 32);
  if (high == 0) {
    fmt_hex((uint32_t)value);
    return;
  }
  fmt_hex(high);
  for (int shift = 28; shift >= 0; shift -= 4) {
    uart_putc((uint8_t)kDigits[((uint32_t)value >> shift) & 0xFu]);
  }
}

void fmt_bytes(const uint8_t *data, size_t len) {
  for (size_t i = 0; i < len; ++i) {
    uart_putc((uint8_t)kDigits[data[i] >> 4]);
    uart_putc((uint8_t)kDigits[data[i] & 0xFu]);
  }
}
