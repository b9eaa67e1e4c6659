#!/usr/bin/env python3
"""Per-function stack frames of a firmware built with nightly
`-Z emit-stack-sizes` (the `.stack_sizes` section: a 4-byte function
address, then its frame size as ULEB128), named with the ELF symbol table.
stdlib only.

Usage: stack_sizes.py FIRMWARE.elf [--top N] [--grep REGEX]
"""

import argparse
import re
import struct
import sys


def read_elf(path):
    data = open(path, "rb").read()
    if data[:4] != b"\x7fELF" or data[4] != 1 or data[5] != 1:
        sys.exit(f"{path}: not a 32-bit little-endian ELF")
    (shoff,) = struct.unpack_from("<I", data, 0x20)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x2E)
    headers = [struct.unpack_from("<IIIIIIIIII", data, shoff + i * shentsize) for i in range(shnum)]
    names = headers[shstrndx]

    def cstr(table_off, off):
        end = data.index(b"\0", table_off + off)
        return data[table_off + off:end].decode(errors="replace")

    sections = {cstr(names[4], h[0]): h for h in headers}
    return data, headers, sections, cstr


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("elf")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--grep")
    args = parser.parse_args()

    data, headers, sections, cstr = read_elf(args.elf)
    if ".stack_sizes" not in sections:
        sys.exit("no .stack_sizes section: build with RUSTFLAGS='-Z emit-stack-sizes' on nightly")
    symtab = sections[".symtab"]
    strtab = headers[symtab[6]]  # sh_link
    symbols = {}
    for i in range(symtab[5] // 16):
        st_name, st_value, st_size, st_info = struct.unpack_from("<IIIB", data, symtab[4] + i * 16)
        if st_info & 0xF == 2:  # STT_FUNC
            symbols.setdefault(st_value & ~1, cstr(strtab[4], st_name))

    section = sections[".stack_sizes"]
    raw = data[section[4]:section[4] + section[5]]
    frames, pos = [], 0
    while pos + 4 <= len(raw):
        (addr,) = struct.unpack_from("<I", raw, pos)
        pos += 4
        size, shift = 0, 0
        while True:
            byte = raw[pos]
            pos += 1
            size |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                break
        frames.append((size, symbols.get(addr & ~1, hex(addr))))

    frames.sort(reverse=True)
    if args.grep:
        frames = [f for f in frames if re.search(args.grep, f[1])]
    for size, name in frames[: args.top]:
        print(f"{size:>7}  {name}")


if __name__ == "__main__":
    main()
