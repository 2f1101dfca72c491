#!/usr/bin/env python3
"""Zero the machine code a GPU of one architecture cannot run in a shared library's
CUDA fat binaries (its `.nv_fatbin` section), so the library compresses to a size the
device tool carries (ONNX Runtime's CUDA provider: 284 MB, 186 MB as xz; for sm_90,
58 MB). Used by bench/gpu-ort.sh.

    fatbin_prune.py IN OUT SM        (SM: 90 for an H100)

A fat binary holds containers (magic 0xBA55ED50), each a list of entries: a header
(kind 1 = PTX, 2 = ELF cubin; the architecture at offset 28) and its payload. In
every container holding a cubin for SM, every other entry's payload is zeroed (the
headers stay, so every offset does): SASS for another major architecture cannot run
on this GPU, and with its own cubin there the driver never JIT-compiles PTX.
Containers without one are left whole. The result runs on that GPU alone.
"""
import struct
import subprocess
import sys

MAGIC = 0xBA55ED50


def section(path):
    """Offset and size of `.nv_fatbin` in the file, from readelf."""
    out = subprocess.run(["readelf", "-S", "-W", path], check=True, capture_output=True, text=True).stdout
    for line in out.splitlines():
        fields = line.replace("[ ", "[").split()
        if ".nv_fatbin" in fields:
            i = fields.index(".nv_fatbin")
            return int(fields[i + 3], 16), int(fields[i + 4], 16)
    sys.exit(f"{path}: no .nv_fatbin section")


def prune(data, start, size, sm):
    kept = zeroed = 0
    pos, end = start, start + size
    while pos + 16 <= end:
        magic, _version, header, body = struct.unpack_from("<IHHQ", data, pos)
        if magic != MAGIC:
            pos += 8  # containers are 8-byte aligned
            continue
        entries, e, stop = [], pos + header, pos + header + body
        while e < stop:
            kind, _v, entry_header, payload = struct.unpack_from("<HHIQ", data, e)
            arch = struct.unpack_from("<I", data, e + 28)[0]
            entries.append((kind == 2 and arch == sm, e + entry_header, payload))
            e += entry_header + payload
        if any(mine for mine, _, _ in entries):
            for mine, at, n in entries:
                if mine:
                    kept += n
                else:
                    data[at:at + n] = bytes(n)
                    zeroed += n
        pos = stop
    return kept, zeroed


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    src, dst, sm = sys.argv[1], sys.argv[2], int(sys.argv[3])
    start, size = section(src)
    data = bytearray(open(src, "rb").read())
    kept, zeroed = prune(data, start, size, sm)
    if kept == 0:
        sys.exit(f"{src}: no cubin for sm_{sm}; nothing pruned")
    open(dst, "wb").write(data)
    print(f"{src}: kept {kept >> 20} MiB of sm_{sm} cubins, zeroed {zeroed >> 20} MiB")


if __name__ == "__main__":
    main()
