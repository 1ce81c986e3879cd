#!/usr/bin/env python3
"""Writes the seed corpora of tests/fuzz/fuzz_media.c and tests/fuzz/fuzz_media_record.c.

The seeds are committed (tests/fuzz/corpus/fuzz_media*/); rerun this after changing it:
    python3 tests/media/make_fuzz_seeds.py
Pure Python (no libvips): headers are built by hand, and the three tiny real images below were
made once with libvips 8.14 (an 8x8 grey gradient: JPEG Q50, WebP lossless, WebP lossy).
"""
import os
import struct
import zlib

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fuzz", "corpus")

TINY_JPEG = bytes.fromhex("ffd8ffdb004300100b0c0e0c0a100e0d0e1211101318281a181616183123251d283a333d3c3933383740485c4e404457453738506d51575f626768673e4d71797064785c656763ffc0000b080008000801011100ffc4001f0000010501010101010100000000000000000102030405060708090a0bffc400b5100002010303020403050504040000017d01020300041105122131410613516107227114328191a1082342b1c11552d1f02433627282090a161718191a25262728292a3435363738393a434445464748494a535455565758595a636465666768696a737475767778797a838485868788898a92939495969798999aa2a3a4a5a6a7a8a9aab2b3b4b5b6b7b8b9bac2c3c4c5c6c7c8c9cad2d3d4d5d6d7d8d9dae1e2e3e4e5e6e7e8e9eaf1f2f3f4f5f6f7f8f9faffda0008010100003f00f3faffd9")
TINY_WEBP_LOSSLESS = bytes.fromhex("52494646fc00000057454250565038580a000000180000000700000700005650384c1c0000002f07c00110cd9421a2ff0132699bccbfed5e531031011320edb4f40f45584946ba00000045786966000049492a000800000006001201030001000000010000001a01050001000000560000001b010500010000005e0000002801030001000000020000001302030001000000010000006987040001000000660000000000000038630000e803000038630000e8030000060000900700040000003032313001910700040000000102030000a00700040000003031303001a0030001000000ffff000002a00400010000000800000003a00400010000000800000000000000")
TINY_WEBP_LOSSY = bytes.fromhex("524946462801000057454250565038580a00000018000000070000070000414c504825000000013f201048da5f7b8888481d06214979851452482185145238ffa388e87fc6b21dd7f3050000565038201a0000003001009d012a0800080002c04c25a400037000fef7ac8280000045584946ba00000045786966000049492a000800000006001201030001000000010000001a01050001000000560000001b010500010000005e0000002801030001000000020000001302030001000000010000006987040001000000660000000000000038630000e803000038630000e8030000060000900700040000003032313001910700040000000102030000a00700040000003031303001a0030001000000ffff000002a00400010000000800000003a00400010000000800000000000000")


def png_chunk(kind, body):
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png(w, h, depth=8, colour=2, pixels=True):
    out = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, colour, 0, 0, 0))
    if pixels:
        raw = b"".join(b"\x00" + bytes((x * 40 + y * 20) & 255 for x in range(w * 3)) for y in range(h))
        out += png_chunk(b"IDAT", zlib.compress(raw)) + png_chunk(b"IEND", b"")
    return out


def jpeg(sof, w, h, app1=0):
    out = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    if app1:
        out += b"\xff\xe1" + struct.pack(">H", app1 + 2) + bytes((0xFF if i % 7 == 0 else 0xAB) for i in range(app1))
    return out + bytes([0xFF, sof]) + struct.pack(">HBHH", 17, 8, h, w) + b"\x03\x01\x22\x00\x02\x11\x01\x03\x11\x01"


def gif(ver, w, h, pixel=True):
    out = ver + struct.pack("<HH", w, h) + b"\x80\x00\x00" + b"\x00\x00\x00\xff\xff\xff"
    if pixel:  # one 1x1 frame, LZW min code size 2: clear, 0, end
        out += b"\x2c\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02\x44\x01\x00\x3b"
    return out


def webp(chunk, body):
    payload = b"WEBP" + chunk + struct.pack("<I", len(body)) + body
    return b"RIFF" + struct.pack("<I", len(payload)) + payload


def vp8(w, h, key=True):
    return bytes([0x10 if key else 0x11, 0x02, 0x00, 0x9D, 0x01, 0x2A]) + struct.pack("<HH", w, h) + b"\x00" * 8


def vp8l(w, h):
    return b"\x2f" + struct.pack("<I", (w - 1) | (h - 1) << 14) + b"\x00" * 4


def vp8x(w, h):
    return b"\x10\x00\x00\x00" + struct.pack("<I", w - 1)[:3] + struct.pack("<I", h - 1)[:3]


SNIFF = {
    "png_640x480": png(640, 480, pixels=False),
    "png_tiny_full": png(3, 2),
    "png_bomb_100000": png(100000, 100000, pixels=False) + b"\x00" * 64,
    "png_16bit_grey": png(7, 9, 16, 0, pixels=False),
    "png_bad_depth": png(7, 9, 16, 3, pixels=False),
    "png_zero_width": png(0, 9, pixels=False),
    "png_truncated_ihdr": png(640, 480, pixels=False)[:20],
    "jpeg_sof0": jpeg(0xC0, 1024, 768),
    "jpeg_sof2_progressive": jpeg(0xC2, 4000, 3000),
    "jpeg_big_app1": jpeg(0xC0, 33, 44, 3000),
    "jpeg_fill_and_rst": b"\xff\xd8\xff\xff\xff\xd0\xff\xc0\x00\x11\x08\x00\x05\x00\x07",
    "jpeg_sos_first": b"\xff\xd8\xff\xda\x00\x08\x01\x01\x00\x00\x3f\x00",
    "jpeg_dnl_height0": jpeg(0xC0, 100, 0),
    "jpeg_eoi_only": b"\xff\xd8\xff\xd9",
    "jpeg_tiny_real": TINY_JPEG,
    "gif89a_1x1": gif(b"GIF89a", 1, 1),
    "gif87a_wide": gif(b"GIF87a", 18433, 1, pixel=False),
    "gif_zero": gif(b"GIF89a", 0, 0, pixel=False),
    "webp_vp8": webp(b"VP8 ", vp8(550, 368)),
    "webp_vp8_interframe": webp(b"VP8 ", vp8(550, 368, key=False)),
    "webp_vp8l": webp(b"VP8L", vp8l(16384, 1)),
    "webp_vp8x_huge": webp(b"VP8X", vp8x(1 << 24, 3)),
    "webp_alph_first": webp(b"ALPH", b"\x00" * 10),
    "webp_lossless_real": TINY_WEBP_LOSSLESS,
    "webp_lossy_real": TINY_WEBP_LOSSY,
    "riff_wave": b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00",
    "bmp": b"BM6\x0c\x00\x00\x00\x00\x00\x00\x36\x00\x00\x00",
    "svg": b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>',
    "mime_jpeg": b"image/jpeg",
    "mime_png_params": b"IMAGE/PNG; charset=binary",
}


def rec(grants=(), fetched=(), sent=1700000005000):
    def s(x):
        return bytes([len(x)]) + x
    out = b"\x01" + s(b"abcdefghijklmnopqrstuvwx27") + s(b"alice") + b"\x02"
    out += struct.pack(">QQ", 5242897, 12345) + bytes(range(32)) + struct.pack(">II", 4000, 3000)
    out += struct.pack(">qqI", 1700000000123, sent, len(grants) * 2)
    out += struct.pack(">I", len(grants)) + b"".join(s(g) for g in grants)
    out += struct.pack(">I", len(fetched)) + b"".join(s(f) for f in fetched)
    return out


SIZE_1000 = b"\x00\x00\x03\xe8"
RECORD = {
    "record_unsent": rec(sent=0),
    "record_grants": rec((b"bob", b"carol.x"), (b"dev-0123456789",)),
    "record_truncated": rec((b"bob",))[:-2],
    "record_version2": b"\x02" + rec()[1:],
    "range_first_500": SIZE_1000 + b"bytes=0-499",
    "range_open": SIZE_1000 + b"bytes=500-",
    "range_suffix": SIZE_1000 + b"bytes=-200",
    "range_multi": SIZE_1000 + b"bytes=0-1,5-6",
    "range_unit": SIZE_1000 + b"items=0-5",
    "range_overflow": SIZE_1000 + b"bytes=99999999999999999999999-",
    "range_past_end": SIZE_1000 + b"bytes=1000-",
    "etag_list": SIZE_1000 + b'"x", W/"' + b"a" * 64 + b'", *',
    "path_original": b"/v1/media/abcdefghijklmnopqrstuvwx27",
    "path_thumb_query": b"/v1/media/abcdefghijklmnopqrstuvwx27/thumb?x=1",
    "path_dotdot": b"/v1/media/../../etc/passwd",
    "path_encoded": b"/v1/media/%2e%2e%2f%2e%2e%2fetc%2fpasswdxx",
    "path_nul": b"/v1/media/abcde\x00ghijklmnopqrstuvwx27",
}


def write(name, seeds):
    d = os.path.join(ROOT, name)
    os.makedirs(d, exist_ok=True)
    for k, v in sorted(seeds.items()):
        with open(os.path.join(d, k), "wb") as f:
            f.write(v)
    print(f"{d}: {len(seeds)} seeds")


if __name__ == "__main__":
    write("fuzz_media", SNIFF)
    write("fuzz_media_record", RECORD)
