#!/usr/bin/env python3
"""Worst-case stack of a call chain: frame sizes from `.stack_sizes`
(stack_sizes.py) joined with the direct-call graph read from
`llvm-objdump -d` (bl/blx/b.w to a symbol). Indirect calls (function
pointers, dyn traits, wakers) are not followed, recursion is cut; so this is
the deepest *statically visible* chain from ROOT, a lower bound on the worst
case, and the chain it prints shows where the stack goes.

Usage: stack_depth.py FIRMWARE.elf ROOT_REGEX
"""

import re
import subprocess
import sys
from functools import lru_cache

sys.path.insert(0, __file__.rsplit("/", 1)[0])
import stack_sizes  # noqa: E402


def frames(elf):
    out = subprocess.run([sys.executable, stack_sizes.__file__, elf, "--top", "100000"],
                         capture_output=True, text=True, check=True).stdout
    sizes = {}
    for line in out.splitlines():
        size, name = line.split(None, 1)
        sizes[name.strip()] = int(size)
    return sizes


def calls(elf):
    dis = subprocess.run(["llvm-objdump", "-d", "--no-show-raw-insn", elf],
                         capture_output=True, text=True, check=True).stdout
    graph, current = {}, None
    head = re.compile(r"^[0-9a-f]+ <(.+)>:$")
    call = re.compile(r"\b(bl|blx|b\.w|b)\s+0x[0-9a-f]+ <([^+>]+)(\+0x[0-9a-f]+)?>")
    for line in dis.splitlines():
        m = head.match(line)
        if m and not m.group(1).startswith("$"):  # skip ARM mapping symbols ($t, $d)
            current = m.group(1)
            graph.setdefault(current, set())
            continue
        if m:
            continue
        m = call.search(line)
        if m and current and m.group(3) is None and m.group(2) != current:
            graph[current].add(m.group(2))
    return graph


def main():
    elf, root = sys.argv[1], re.compile(sys.argv[2])
    sizes, graph = frames(elf), calls(elf)

    on_path = set()

    @lru_cache(maxsize=None)
    def deepest(fn):
        on_path.add(fn)
        best, chain = 0, ()
        for callee in graph.get(fn, ()):
            if callee in on_path:
                continue
            depth, sub = deepest(callee)
            if depth > best:
                best, chain = depth, sub
        on_path.discard(fn)
        return sizes.get(fn, 0) + best, (fn,) + chain

    roots = [fn for fn in graph if root.search(demangle(fn))]
    results = sorted((deepest(fn) for fn in roots), reverse=True)
    if not results:
        sys.exit("no function matches ROOT")
    total, chain = results[0]
    print(f"deepest statically visible chain: {total} bytes")
    for fn in chain:
        print(f"  {sizes.get(fn, 0):>6}  {demangle(fn)[:140]}")


_cache = {}


def demangle(name):
    if name not in _cache:
        _cache[name] = subprocess.run(["llvm-cxxfilt", name], capture_output=True, text=True).stdout.strip()
    return _cache[name]


if __name__ == "__main__":
    main()
