#!/usr/bin/env python3
"""Flash and RAM use of a 32-bit little-endian ARM ELF, from its section
headers alone (stdlib only, so a fresh CI machine needs no binutils).

flash = every allocated section that occupies bytes in the image
        (.vector_table, .text, .rodata, .data's load image, ...)
ram   = every allocated, writable section (.data, .bss, .uninit, ...)

Usage: elf_size.py FIRMWARE.elf [--check BUDGET_FILE [--slack PERCENT] [--budget-prefix P]]
With --check, exits 1 when flash or ram exceeds the budget by more than
PERCENT (default 10); the budget file holds `flash = N` and `ram = N` lines.
"""

import argparse
import struct
import sys

SHF_WRITE, SHF_ALLOC = 0x1, 0x2
SHT_NOBITS = 8


def sections(path):
    with open(path, "rb") as f:
        data = f.read()
    if data[:4] != b"\x7fELF" or data[4] != 1 or data[5] != 1:
        sys.exit(f"{path}: not a 32-bit little-endian ELF")
    (shoff,) = struct.unpack_from("<I", data, 0x20)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x2E)
    headers = [struct.unpack_from("<IIIIIIIIII", data, shoff + i * shentsize) for i in range(shnum)]
    strtab = headers[shstrndx]
    names = data[strtab[4]:strtab[4] + strtab[5]]

    def name(offset):
        return names[offset:names.index(b"\0", offset)].decode()

    for sh_name, sh_type, sh_flags, _addr, _off, sh_size, *_ in headers:
        yield name(sh_name), sh_type, sh_flags, sh_size


def measure(path):
    flash = ram = 0
    rows = []
    for name, kind, flags, size in sections(path):
        if not flags & SHF_ALLOC or size == 0:
            continue
        in_flash = kind != SHT_NOBITS
        in_ram = bool(flags & SHF_WRITE)
        flash += size if in_flash else 0
        ram += size if in_ram else 0
        rows.append((name, size, in_flash, in_ram))
    return flash, ram, rows


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("elf")
    parser.add_argument("--check")
    parser.add_argument("--slack", type=float, default=10.0)
    parser.add_argument("--budget-prefix", default="",
                        help="read PREFIXflash / PREFIXram from the budget file (e.g. tls_)")
    args = parser.parse_args()

    flash, ram, rows = measure(args.elf)
    for name, size, in_flash, in_ram in rows:
        where = "+".join(w for w, on in (("flash", in_flash), ("ram", in_ram)) if on)
        print(f"  {name:<16} {size:>8}  {where}")
    print(f"flash = {flash}")
    print(f"ram = {ram}")

    if args.check:
        budget = {}
        with open(args.check) as f:
            for line in f:
                line = line.split("#", 1)[0].strip()
                if "=" in line:
                    key, value = (part.strip() for part in line.split("=", 1))
                    budget[key] = int(value)
        failed = False
        for key, used in ((args.budget_prefix + "flash", flash), (args.budget_prefix + "ram", ram)):
            if key not in budget:
                continue
            limit = budget[key] * (1 + args.slack / 100)
            verdict = "ok" if used <= limit else "OVER BUDGET"
            print(f"{key}: {used} B vs recorded {budget[key]} B (limit {int(limit)} B): {verdict}")
            failed |= used > limit
        if failed:
            sys.exit(1)


if __name__ == "__main__":
    main()
