#!/usr/bin/env python3
"""Writes the seed corpus of fuzz_ws (tests/fuzz/corpus/fuzz_ws/).

Each seed is: one byte choosing the read chunking (low 3 bits), one byte choosing max_message
(value * 16, 0xff = no limit), then a WebSocket byte stream. See tests/fuzz/fuzz_ws.c.
Run from anywhere: python3 tests/fuzz/make_ws_seeds.py
"""
import os
import struct

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "fuzz_ws")
KEY = bytes([0x37, 0xFA, 0x21, 0x3D])
NO_LIMIT = 0xFF


def frame(op, payload=b"", fin=True, mask=None, rsv=0, len_form=None):
    """One frame; len_form forces the 7/16/64-bit length encoding (for non-minimal ones)."""
    b0 = (0x80 if fin else 0) | (rsv << 4) | op
    n = len(payload)
    form = len_form or (7 if n <= 125 else 16 if n <= 0xFFFF else 64)
    mbit = 0x80 if mask else 0
    if form == 7:
        head = bytes([b0, mbit | n])
    elif form == 16:
        head = bytes([b0, mbit | 126]) + struct.pack(">H", n)
    else:
        head = bytes([b0, mbit | 127]) + struct.pack(">Q", n)
    if mask:
        payload = bytes(c ^ mask[i % 4] for i, c in enumerate(payload))
        head += mask
    return head + payload


def close(code=None, reason=b"", mask=None):
    body = b"" if code is None else struct.pack(">H", code) + reason
    return frame(0x8, body, mask=mask)


def seeds():
    m = KEY
    s = {}
    # plain frames of each kind, both directions
    s["text_masked"] = (0, NO_LIMIT, frame(1, b"hello", mask=m))
    s["text_unmasked"] = (0, NO_LIMIT, frame(1, b"hello"))
    s["binary_masked"] = (1, NO_LIMIT, frame(2, bytes(range(40)), mask=m))
    s["ping_pong_masked"] = (2, NO_LIMIT, frame(9, b"hb", mask=m) + frame(0xA, b"hb", mask=m))
    s["ping_pong_unmasked"] = (3, NO_LIMIT, frame(9, b"") + frame(0xA, b"x" * 125))
    s["close_code_reason"] = (0, NO_LIMIT, close(1000, b"bye \xc3\xa9", mask=m))
    s["close_empty"] = (1, NO_LIMIT, close() + close(mask=m))
    s["json_auth"] = (4, NO_LIMIT, frame(1, b'{"type":"auth","token":"abc"}', mask=m) +
                      frame(1, b'{"type":"ping"}', mask=m))
    # lengths at the 7/16-bit boundaries, and non-minimal encodings
    s["len_125"] = (5, NO_LIMIT, frame(2, b"a" * 125, mask=m))
    s["len_126"] = (6, NO_LIMIT, frame(2, b"b" * 126, mask=m))
    s["len_300_unmasked"] = (7, NO_LIMIT, frame(2, b"c" * 300))
    s["nonminimal_16"] = (2, NO_LIMIT, frame(1, b"abc", mask=m, len_form=16) + frame(9, b"p", len_form=16, mask=m))
    s["nonminimal_64"] = (3, NO_LIMIT, frame(1, b"abc", len_form=64))
    # fragmentation, control frames between fragments, UTF-8 split across fragments
    s["frag3_text"] = (1, NO_LIMIT, frame(1, b"Hel", fin=False, mask=m) + frame(0, b"lo, ", fin=False, mask=m) +
                       frame(0, b"world", mask=m))
    s["frag_with_controls"] = (2, NO_LIMIT, frame(2, b"ab", fin=False) + frame(9, b"ping") + frame(0, b"cd", fin=False) +
                               frame(0xA, b"") + frame(0, b"ef") + close(1001, b"away"))
    s["frag_utf8_split"] = (3, NO_LIMIT, frame(1, b"caf\xc3", fin=False, mask=m) + frame(0, b"\xa9 \xe2", fin=False, mask=m) +
                            frame(0, b"\x82", fin=False, mask=m) + frame(0, b"\xac", mask=m))
    s["frag_empty"] = (0, NO_LIMIT, frame(1, b"", fin=False) + frame(0, b"", fin=False) + frame(0, b""))
    # size limit: fragments summing over max, and a huge announced length
    s["too_big_frags"] = (1, 4, frame(2, b"x" * 40, fin=False, mask=m) + frame(0, b"y" * 40, mask=m))
    s["too_big_header64"] = (0, 1, bytes([0x82, 0x80 | 127]) + struct.pack(">Q", 1 << 40) + m)
    s["huge_header_no_limit"] = (2, NO_LIMIT, bytes([0x82, 127]) + struct.pack(">Q", (1 << 62) + 5))
    # protocol errors
    s["rsv1"] = (0, NO_LIMIT, frame(1, b"x", rsv=4, mask=m))
    s["opcode_3"] = (0, NO_LIMIT, frame(3, b"x", mask=m))
    s["opcode_b"] = (1, NO_LIMIT, frame(0xB, b"", mask=m))
    s["len_top_bit"] = (0, NO_LIMIT, bytes([0x82, 127]) + struct.pack(">Q", 1 << 63))
    s["ping_126"] = (2, NO_LIMIT, frame(9, b"p" * 126))
    s["ping_not_fin"] = (0, NO_LIMIT, frame(9, b"p", fin=False, mask=m))
    s["lone_cont"] = (1, NO_LIMIT, frame(0, b"x", mask=m))
    s["text_inside_frag"] = (2, NO_LIMIT, frame(1, b"a", fin=False) + frame(1, b"b"))
    s["bad_utf8"] = (3, NO_LIMIT, frame(1, b"ok\xed\xa0\x80", mask=m))
    s["close_1byte"] = (0, NO_LIMIT, frame(8, b"\x03", mask=m))
    s["close_bad_codes"] = (0, NO_LIMIT, close(1005) + close(1015) + close(2999))
    s["close_bad_reason"] = (1, NO_LIMIT, close(1000, b"\xc3\x28"))
    return s


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, (chunk, maxsel, stream) in seeds().items():
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(bytes([chunk, maxsel]) + stream)


if __name__ == "__main__":
    main()
