/*
 * mtp_platform.h on Arduino: the link is `Serial`, the timer counts CPU cycles on AVR (Timer1)
 * and microseconds elsewhere (micros()).
 */
#include <Arduino.h>

#include "mtp_arduino.h"
#include "mtp_platform.h"

#if defined(__AVR__)
#include <avr/interrupt.h>
#include <avr/io.h>

/* Timer1 runs at the CPU clock (prescaler 1) in normal mode; its overflow interrupt extends it to
 * 48 bits, so one tick is one cycle (simavr simulates this exactly). The Arduino core uses Timer1
 * only for PWM on two pins and Servo/tone, which a model project does not use. */
static volatile uint32_t timer1_overflows;

ISR(TIMER1_OVF_vect) { timer1_overflows++; }

static void timer_init(void) {
  uint8_t sreg = SREG;
  cli();
  TCCR1A = 0;
  TCCR1B = _BV(CS10);
  TCNT1 = 0;
  TIFR1 = _BV(TOV1);
  TIMSK1 = _BV(TOIE1);
  SREG = sreg;
}

uint64_t mtp_platform_timer_ticks(void) {
  uint8_t sreg = SREG;
  cli();
  uint16_t low = TCNT1;
  uint32_t high = timer1_overflows;
  /* An overflow that happened since interrupts were disabled has not been counted yet. */
  if ((TIFR1 & _BV(TOV1)) && low < 0x8000u) high++;
  SREG = sreg;
  return ((uint64_t)high << 16) | low;
}

uint32_t mtp_platform_timer_hz(void) { return (uint32_t)F_CPU; }

int mtp_platform_timer_is_cycles(void) { return 1; }

#else

static void timer_init(void) {}

uint64_t mtp_platform_timer_ticks(void) {
  /* micros() wraps every ~71 minutes; count the wraps (the runtime reads the timer far more often). */
  static uint32_t last, wraps;
  uint32_t now = micros();
  if (now < last) wraps++;
  last = now;
  return ((uint64_t)wraps << 32) | now;
}

uint32_t mtp_platform_timer_hz(void) { return 1000000u; }

int mtp_platform_timer_is_cycles(void) { return 0; }

#endif

void mtp_arduino_init(void) {
  Serial.begin(MTP_BAUD_RATE);
  timer_init();
}

void mtp_platform_write(const uint8_t *data, size_t len) {
  /* Serial.write blocks while its transmit buffer is full, so every byte goes out. */
  while (len > 0) {
    size_t n = Serial.write(data, len);
    data += n;
    len -= n;
  }
}

int mtp_platform_read(uint8_t *buf, size_t cap) {
  /* A serial port never reports "closed": the RPC server runs until reset. */
  int n = 0;
  while ((size_t)n < cap && Serial.available() > 0) {
    int byte = Serial.read();
    if (byte < 0) break;
    buf[n++] = (uint8_t)byte;
  }
  return n;
}
