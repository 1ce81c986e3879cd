#!/usr/bin/env python3
"""Writes the seed corpus of fuzz_tls (tests/fuzz/corpus/fuzz_tls/).

Each seed is two setting bytes and a payload (see tests/fuzz/fuzz_tls.c). Raw-mode seeds carry
real ClientHellos, made by Python's ssl module (OpenSSL) into a memory BIO, no network: TLS 1.3
and 1.2, with and without SNI and ALPN, h2 only; then the same cut short, followed by garbage or
an alert, a plain HTTP request, an SSLv2-style hello, a lone ChangeCipherSpec. Session-mode
seeds carry application data (an HTTP request, a WebSocket upgrade), some with a flipped byte.
Run from anywhere: python3 tests/fuzz/make_tls_seeds.py
"""
import os
import ssl
import struct

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "fuzz_tls")

# byte 0: cut mode (bits 0-2), SSL_write size (bits 3-5), TLS 1.2 (bit 6), session (bit 7)
WHOLE, BY_RECORD, ONE, TWO, THREE, SEVEN, SIXTY4, FIVE17 = range(8)
SESSION = 0x80
TLS12 = 0x40


def client_hello(version=None, sni=None, alpn=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if version == "1.2":
        ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    elif version == "1.3":
        ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_3
    if alpn:
        ctx.set_alpn_protocols(alpn)
    rb, wb = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(rb, wb, server_side=False, server_hostname=sni)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return wb.read()


def record(ctype, body, version=0x0303):
    return struct.pack(">BHH", ctype, version, len(body)) + body


def seeds():
    h13 = client_hello("1.3", "chat.example.org", ["http/1.1"])
    h12 = client_hello("1.2", "chat.example.org", ["http/1.1"])
    hany = client_hello(None, None, None)
    hh2 = client_hello(None, "chat.example.org", ["h2"])
    alert = record(0x15, bytes([2, 40]))  # fatal handshake_failure
    ccs = record(0x14, b"\x01")
    yield "hello13", bytes([WHOLE, 0]) + h13
    yield "hello12", bytes([WHOLE, 0]) + h12
    yield "hello_plain", bytes([BY_RECORD, 0]) + hany
    yield "hello_h2", bytes([WHOLE, 0]) + hh2
    yield "hello13_bytes", bytes([ONE, 0]) + h13
    yield "hello12_sevens_paused", bytes([SEVEN, 1]) + h12
    yield "hello_short", bytes([WHOLE, 0]) + h13[: len(h13) // 2]
    yield "hello_then_garbage", bytes([BY_RECORD, 0]) + h13 + record(0x17, b"\x00" * 64)
    yield "hello_then_alert", bytes([BY_RECORD, 0]) + h12 + alert
    yield "hello_then_ccs_hello", bytes([BY_RECORD, 0]) + h13 + ccs + h13
    yield "hello_in_two_records", bytes([BY_RECORD, 0]) + record(0x16, h12[5:40]) + record(0x16, h12[40:])
    yield "http_get", bytes([WHOLE, 0]) + b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    yield "http_get_split", bytes([ONE, 0]) + b"GET / HTTP/1.1\r\n\r\n"
    yield "sslv2_hello", bytes([WHOLE, 0]) + bytes.fromhex("802b0103010012000000100000040000050000")
    yield "lone_ccs", bytes([WHOLE, 0]) + ccs
    yield "huge_length", bytes([WHOLE, 0]) + struct.pack(">BHH", 0x16, 0x0301, 0xFFFF) + b"\x01\x00\xff\xff"
    req = b"GET /v1/ws HTTP/1.1\r\nHost: chat.example.org\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" \
          b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    yield "session13", bytes([SESSION | WHOLE, 0]) + req
    yield "session12", bytes([SESSION | TLS12 | BY_RECORD, 0]) + req
    yield "session13_small_writes_paused", bytes([SESSION | (2 << 3) | SIXTY4, 1]) + req
    yield "session12_big", bytes([SESSION | TLS12 | (5 << 3) | FIVE17, 0]) + bytes(range(256)) * 80
    yield "session13_flip", bytes([SESSION | BY_RECORD, 3 << 1]) + b"\x00\x20" + req
    yield "session12_flip_header", bytes([SESSION | TLS12 | WHOLE, 5 << 1]) + b"\x00\x03" + req
    yield "session13_empty", bytes([SESSION, 0])


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, data in seeds():
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(data)
    print(f"wrote {len(list(seeds()))} seeds to {OUT}")


if __name__ == "__main__":
    main()
