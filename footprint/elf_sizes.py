#!/usr/bin/env python3
"""Section sizes of ELF files, like `size -A`, with nothing but the stdlib.

Usage: elf_sizes.py FIRMWARE BASELINE

Prints the allocated sections of both, then key=value lines for scripts:
flash = every allocated section with file contents (.vector_table, .text,
.rodata, .data's load image), ram_static = .data + .bss; core_* = FIRMWARE
minus BASELINE (the same runtime without the core).
"""
import struct
import sys

SHF_ALLOC = 0x2
SHT_NOBITS = 8


def sections(path):
    data = open(path, "rb").read()
    if data[:4] != b"\x7fELF":
        sys.exit(f"{path}: not an ELF file")
    is64 = data[4] == 2
    end = "<" if data[5] == 1 else ">"
    if is64:
        shoff, = struct.unpack_from(end + "Q", data, 0x28)
        shentsize, shnum, shstrndx = struct.unpack_from(end + "HHH", data, 0x3A)
        fmt = end + "IIQQQQI"
    else:
        shoff, = struct.unpack_from(end + "I", data, 0x20)
        shentsize, shnum, shstrndx = struct.unpack_from(end + "HHH", data, 0x2E)
        fmt = end + "IIIIIII"
    heads = [struct.unpack_from(fmt, data, shoff + i * shentsize) for i in range(shnum)]
    strtab_off, strtab_size = heads[shstrndx][4], heads[shstrndx][5]
    strtab = data[strtab_off:strtab_off + strtab_size]
    out = []
    for name, kind, flags, addr, _off, size, _link in heads:
        label = strtab[name:strtab.index(b"\0", name)].decode()
        out.append((label, kind, flags, addr, size))
    return out


def symbol_words(path, wanted, count):
    """`count` little u32 words stored at symbol `wanted`, or None."""
    data = open(path, "rb").read()
    if data[4] != 1:
        return None  # only 32-bit targets carry the table
    shoff, = struct.unpack_from("<I", data, 0x20)
    shentsize, shnum, _ = struct.unpack_from("<HHH", data, 0x2E)
    heads = [struct.unpack_from("<IIIIIII", data, shoff + i * shentsize) for i in range(shnum)]
    for _name, kind, _flags, _addr, off, size, link in heads:
        if kind != 2:  # SHT_SYMTAB
            continue
        str_off = heads[link][4]
        for i in range(size // 16):
            st_name, value, _sz, _info, _other, _shndx = struct.unpack_from("<IIIBBH", data, off + i * 16)
            end = data.index(b"\0", str_off + st_name)
            if data[str_off + st_name:end].decode() != wanted:
                continue
            for _n, _k, _f, s_addr, s_off, s_size, _l in heads:
                if s_addr <= value < s_addr + s_size and _k != SHT_NOBITS:
                    return struct.unpack_from("<%dI" % count, data, s_off + value - s_addr)
    return None


def summary(path):
    secs = sections(path)
    flash = sum(s for _, k, f, _, s in secs if f & SHF_ALLOC and k != SHT_NOBITS)
    by_name = {n: s for n, _, _, _, s in secs}
    ram = by_name.get(".data", 0) + by_name.get(".bss", 0) + by_name.get(".uninit", 0)
    return secs, flash, ram, by_name


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    firmware, baseline = sys.argv[1], sys.argv[2]
    results = {}
    for label, path in (("firmware", firmware), ("baseline", baseline)):
        secs, flash, ram, by_name = summary(path)
        results[label] = (flash, ram, by_name)
        print(f"{path}:")
        print(f"  {'section':<16}{'size':>10}{'addr':>14}")
        for name, kind, flags, addr, size in secs:
            if flags & SHF_ALLOC:
                print(f"  {name:<16}{size:>10}{addr:>#14x}")
        print(f"  {'flash':<16}{flash:>10}")
        print(f"  {'static RAM':<16}{ram:>10}")
    (f_flash, f_ram, f), (b_flash, b_ram, b) = results["firmware"], results["baseline"]
    print()
    for key in (".text", ".rodata", ".data", ".bss"):
        print(f"core{key.replace('.', '_')}_bytes={f.get(key, 0) - b.get(key, 0)}")
    print(f"firmware_flash_bytes={f_flash}")
    print(f"baseline_flash_bytes={b_flash}")
    print(f"core_flash_bytes={f_flash - b_flash}")
    print(f"core_static_ram_bytes={f_ram - b_ram}")
    sizes = symbol_words(firmware, "PAYWALL_AUTH_TYPE_SIZES", 3)
    if sizes:
        for name, value in zip(("machine", "session", "output"), sizes):
            print(f"target_size_of_{name}_bytes={value}")


if __name__ == "__main__":
    main()
