/*
 * The Arduino board layer of the arduino template: the serial link and the timer behind
 * mtp_platform.h, for every Arduino core (AVR, SAM, SAMD, mbed, RP2040, Teensy, ESP32 ...).
 */
#ifndef MTP_ARDUINO_H_
#define MTP_ARDUINO_H_

#include <stdint.h>

/* Baud rate of the link to the host; the host side opens the port at the same rate. */
#ifndef MTP_BAUD_RATE
#define MTP_BAUD_RATE 115200
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* Opens the serial port and starts the timer; call it first in setup(). */
void mtp_arduino_init(void);

#ifdef __cplusplus
}
#endif

#endif /* MTP_ARDUINO_H_ */
