#!/usr/bin/env python3
"""The machine code (SASS) of the product's kernels, read without a GPU.

CUDA 13's toolkit on the development machines has ptxas but no disassembler. Debian's own CUDA
toolkit package (non-free, 11.8) has nvdisasm, which reads sm_90 machine code once the cubin's ELF
header is put in the form it knows (the newer header keeps the same fields elsewhere: osabi,
abiversion, e_flags; the code itself is unchanged). So this compiles a kernel source with the
project's nvcc and flags to a cubin, rewrites the header, disassembles it with its line table and
reports per kernel what ptxas made of it:

  profiling/sass.py --fetch                     # nvdisasm into ~/.cache/mnist_cuda/sass-tools
  profiling/sass.py kernels/dense_tf32_forward.cu [-k REGEX]  # per kernel: instructions, local memory, loops
  profiling/sass.py kernels/tail.cu -k 'tail_kernel<.*TF32, true' --dump 0x1f20-0x2800
  profiling/sass.py kernels/dense_tf32_backward.cu --summary  # one line a kernel (dense_*.cu: the GEMM tiles)
  profiling/sass.py kernels/tail.cu --summary --build build   # the build's own machine code: no compile

Per kernel: the instruction count, local-memory instructions (LDL/STL: spills or a stack frame),
and every loop (a backward branch; innermost marked) with its instruction mix, its share of math
(FFMA / HMMA / HGMMA / DFMA ...), its shared and global memory instructions, and the source lines
its instructions come from. Flags inside a loop: an integer division (I2F.RP + MUFU.RCP, ≈ 20
instructions), a local-memory access, a generic load or store (LD/ST: a pointer the compiler could
not place in shared or global memory, with 64-bit address arithmetic and the generic path's latency), a global load behind a store that used an earlier load ("serial global loads": one round trip each, in sequence; also a column of --summary), and a global load issued after the warp waited for the load before it ("loads after a wait": a load's conversion placed before the next load; the --summary column "wait"). Static counts: no timing (the loops run different trip counts),
but the mix is what the SM issues, which ptxas's resource report does not show.

The package is found on the machine's own Debian mirror, with its non-free component added in a
private apt configuration (the system's sources are not changed).
"""
import argparse
import collections
import functools
import glob
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Outside the tree: .deps/ travels to the GPU machines, whose transfer this 50 MB would overflow.
TOOLS = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "mnist_cuda", "sass-tools")
MATH = ("FFMA", "FMUL", "FADD", "HMMA", "HGMMA", "DFMA", "DADD", "DMUL", "HFMA2", "IMMA")


def find_nvdisasm():
    for p in (os.environ.get("MNIST_NVDISASM"), os.path.join(TOOLS, "usr", "bin", "nvdisasm"), shutil.which("nvdisasm")):
        if p and os.access(p, os.X_OK):
            return p
    return None


def debian_source():
    """(URI, suite) of the machine's Debian main archive, from its apt sources (deb822 or one-line)."""
    paths = ["/etc/apt/sources.list"] + sorted(
        os.path.join("/etc/apt/sources.list.d", f) for f in os.listdir("/etc/apt/sources.list.d")
        if f.endswith((".list", ".sources"))) if os.path.isdir("/etc/apt/sources.list.d") else ["/etc/apt/sources.list"]
    for path in paths:
        try:
            text = open(path).read()
        except OSError:
            continue
        for stanza in re.split(r"\n\s*\n", text):
            uri = re.search(r"^URIs:\s*(\S+)", stanza, re.M)
            suites = re.search(r"^Suites:\s*(\S+)", stanza, re.M)
            if uri and suites and "/debian" in uri.group(1) and "security" not in uri.group(1):
                return uri.group(1), suites.group(1)
        for line in text.splitlines():
            m = re.match(r"\s*deb\s+(?:\[[^]]*\]\s+)?(\S+/debian)/?\s+(\S+)\s", line)
            if m and "security" not in m.group(1):
                return m.group(1), m.group(2)
    return None


def fetch():
    src = debian_source()
    if not src:
        sys.exit("sass.py --fetch: no Debian archive found in /etc/apt/sources.list{,.d}")
    uri, suite = src
    suite = suite.split("-")[0]  # the release itself (bookworm), not -updates
    with tempfile.TemporaryDirectory() as tmp:
        for d in ("lists/partial", "cache/archives/partial", "parts"):
            os.makedirs(os.path.join(tmp, d))
        with open(os.path.join(tmp, "sources.list"), "w") as f:
            f.write(f"deb {uri} {suite} non-free\n")
        opts = [f"-oDir::Etc::SourceList={tmp}/sources.list", f"-oDir::Etc::SourceParts={tmp}/parts",
                f"-oDir::State::Lists={tmp}/lists", f"-oDir::Cache={tmp}/cache", "-oDebug::NoLocking=1", "-qq"]
        if os.geteuid() == 0:
            opts.append("-oAPT::Sandbox::User=root")  # (its _apt user cannot write the private directories)
        subprocess.run(["apt-get", *opts, "update"], check=True)
        subprocess.run(["apt-get", *opts, "download", "nvidia-cuda-toolkit"], check=True, cwd=tmp)
        deb = [f for f in os.listdir(tmp) if f.endswith(".deb")][0]
        os.makedirs(TOOLS, exist_ok=True)
        tar = subprocess.run(["dpkg-deb", "--fsys-tarfile", os.path.join(tmp, deb)], check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", TOOLS, "./usr/bin/nvdisasm", "./usr/bin/cuobjdump"], input=tar, check=True)
    print(f"nvdisasm: {os.path.join(TOOLS, 'usr', 'bin', 'nvdisasm')} ({deb})")


def arch_of(src):
    """The architecture kernels/CMakeLists.txt builds a source for: sm_90a for the dense GEMMs (wgmma)."""
    return "sm_90a" if re.fullmatch(r"dense(_[a-z0-9_]+)?\.cu", os.path.basename(src)) else "sm_90"


def compile_cubin(src, arch, out):
    nvcc = os.environ.get("NVCC", "/usr/local/cuda/bin/nvcc")
    cmd = [nvcc, "-cubin", f"-arch={arch}", "-O3", "-DNDEBUG", "--expt-relaxed-constexpr", "-std=c++17", "-lineinfo",
           f"-I{ROOT}", "-o", out, src]
    subprocess.run(cmd, check=True)
    fix_header(out)


def fix_header(cubin):
    """The header as nvdisasm 11.8 reads it: osabi 0x33, abiversion 7, e_flags = virtual SM << 16 | 0x500 | SM
    (64-bit addresses, unified texture mode); the newer header keeps the SM in e_flags' second byte."""
    d = bytearray(open(cubin, "rb").read())
    if d[7] != 0x33:
        sm = (struct.unpack_from("<I", d, 48)[0] >> 8) & 0xFF
        d[7], d[8] = 0x33, 7
        struct.pack_into("<I", d, 48, (sm << 16) | 0x500 | sm)
        open(cubin, "wb").write(d)


def elf_sections(data):
    """{name: bytes} of a 64-bit little-endian ELF file's sections."""
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        return {}
    shoff = struct.unpack_from("<Q", data, 0x28)[0]
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    heads = [struct.unpack_from("<IIQQQQ", data, shoff + i * shentsize) for i in range(shnum)]
    if shstrndx >= len(heads):
        return {}
    strtab = heads[shstrndx][4]
    out = {}
    for name, typ, _, _, off, size in heads:
        end = data.index(b"\0", strtab + name)
        out[data[strtab + name:end].decode(errors="replace")] = b"" if typ == 8 else data[off:off + size]  # (8: NOBITS)
    return out


# A fatbin entry's flags: its payload compressed by LZ4 (not read here) or ZSTD (read by Debian's zstd,
# where installed: nvcc compresses the largest images, e.g. kernels/dense_tf32_ablation.cu's).
FATBIN_LZ4, FATBIN_ZSTD = 0x2000, 0x8000


def fatbin_payload(payload, flags, packed):
    """An entry's payload as stored, uncompressed; None where it cannot be (LZ4, or no zstd)."""
    if flags & FATBIN_LZ4:
        return None
    if not flags & FATBIN_ZSTD:
        return payload
    zstd = shutil.which("zstd")
    if not zstd or payload[:4] != b"\x28\xb5\x2f\xfd":
        return None
    r = subprocess.run([zstd, "-d", "-c", "-q"], input=payload[:packed], capture_output=True)
    return r.stdout if r.returncode == 0 else None


def cubin_from_object(obj, out):
    """The machine code a build already made: the sm_90 / sm_90a ELF image in the .nv_fatbin section of
    an object nvcc wrote (kernels/CMakeLists.txt's flags are compile_cubin's: -O3 -DNDEBUG -lineinfo, the
    same architecture), written to `out` with nvdisasm's header. False, writing nothing, where the object
    holds no such image or it cannot be read (then compile_cubin)."""
    try:
        sections = elf_sections(open(obj, "rb").read())
    except (OSError, struct.error, ValueError):
        return False
    fb = sections.get(".nv_fatbin", b"")
    found = None
    o = 0
    while o + 16 <= len(fb):  # one or more fatbins, each a header and its entries
        magic, _, hsize, fsize = struct.unpack_from("<IHHQ", fb, o)
        if magic != 0xBA55ED50:
            break
        e, end = o + hsize, o + hsize + fsize
        while e + 64 <= end:
            kind, _, ehs, size = struct.unpack_from("<HHIQ", fb, e)
            packed = struct.unpack_from("<I", fb, e + 16)[0]  # (the compressed size: the payload is padded)
            arch = struct.unpack_from("<I", fb, e + 28)[0]
            flags = struct.unpack_from("<Q", fb, e + 40)[0]
            if kind == 2 and arch == 90:
                payload = fatbin_payload(fb[e + ehs:e + ehs + size], flags, packed)
                if payload is None:
                    return False
                if payload[:4] == b"\x7fELF":
                    found = payload
            e += ehs + size
        o = end
    if found is None:
        return False
    phoff, shoff = struct.unpack_from("<QQ", found, 0x20)
    phentsize, phnum, shentsize, shnum = struct.unpack_from("<HHHH", found, 0x36)
    with open(out, "wb") as f:
        f.write(found[:max(phoff + phentsize * phnum, shoff + shentsize * shnum, 64)])  # (the payload is padded)
    fix_header(out)
    return True


def build_object(build, src):
    """The object the build at `build` compiled `src` (under the repository; relative: to its root) into, if it is not older
    than the source; else None."""
    rel = os.path.relpath(src if os.path.isabs(src) else os.path.join(ROOT, src), ROOT)
    hits = glob.glob(os.path.join(build, os.path.dirname(rel), "CMakeFiles", "*.dir", os.path.basename(rel) + ".o"))
    # (the newest, where a source moved between targets leaves the old target's object behind)
    newest = max(hits, key=os.path.getmtime, default=None)
    if newest is None or os.path.getmtime(newest) < os.path.getmtime(os.path.join(ROOT, rel)):
        return None
    return newest


def disassemble(nvdisasm, cubin):
    return subprocess.run([nvdisasm, "-c", "-g", "-hex", cubin], check=True, capture_output=True, text=True).stdout


INS = re.compile(r"/\*([0-9a-f]{4,})\*/\s+(.*?)\s*;")
LINE = re.compile(r'//## File "([^"]+)", line (\d+)')
LABEL = re.compile(r"^\.L_x_(\d+):")
HEX = re.compile(r"/\*\s*(0x[0-9a-f]{16})\s*\*/\s*$")


def branch_offset(lo, hi):
    """A BRA's target offset (bytes, from the next instruction) from its 128-bit encoding: a signed
    count of 4-byte units whose low 8 bits are bits 16..23 and the rest bits 34..81. (nvdisasm 11.8
    leaves some target labels undefined in newer code; checked against the labels it does print.)"""
    v = (hi << 64) | lo
    high = (v >> 34) & ((1 << 48) - 1)
    if high >> 47:
        high -= 1 << 48
    return 4 * ((high << 8) | ((lo >> 16) & 0xFF))


PREDICATE = re.compile(r"^@!?U?P[0-9T]+\s+")


@functools.lru_cache(maxsize=1 << 16)
def opcode(text):
    words = PREDICATE.sub("", text, count=1).split(None, 1)
    return words[0] if words else ""


def parse(text):
    """[(mangled name, [(addr, text, (file, line) or None)], {label: addr})] per kernel."""
    parts = re.split(r"\n//-+ \.text\.(\S+)\s+-+\n", text)
    out = []
    for name, body in zip(parts[1::2], parts[2::2]):
        ins, labels, pending, where = [], {}, [], None
        rel = {}  # file as nvdisasm names it -> relative to the repository
        words = {}  # addr -> [low, high] encoding words
        last = None
        for line in body.split("\n"):
            s = line.strip()
            m = LABEL.match(s)
            if m:
                pending.append(m.group(1))
                continue
            m = LINE.search(s)
            if m:
                f = m.group(1)
                if f not in rel:
                    rel[f] = os.path.relpath(f, ROOT)
                where = (rel[f], int(m.group(2)))
                continue
            m = INS.search(s)
            if m:
                a = int(m.group(1), 16)
                for lab in pending:
                    labels[lab] = a
                pending = []
                ins.append((a, m.group(2), where))
                last = a
                h = HEX.search(s)
                words[a] = [int(h.group(1), 16)] if h else []
                continue
            h = HEX.search(s)
            if h and last is not None and len(words[last]) == 1:
                words[last].append(int(h.group(1), 16))
        # Branch targets nvdisasm left without a label: from the encoding (when it agrees with
        # every label that is printed).
        decoded, agree = {}, True
        for a, t, _ in ins:
            m = re.search(r"\.L_x_(\d+)", t)
            if opcode(t).startswith("BRA") and m and len(words.get(a, [])) == 2:
                tgt = a + 16 + branch_offset(*words[a])
                decoded[m.group(1)] = tgt
                if m.group(1) in labels and labels[m.group(1)] != tgt:
                    agree = False
        if agree:
            for lab, tgt in decoded.items():
                labels.setdefault(lab, tgt)
        out.append((name, ins, labels))
    return out


def demangle(names):
    res = subprocess.run(["c++filt"], input="\n".join(names), capture_output=True, text=True).stdout.split("\n")
    return [shorten(r) for r in res[: len(names)]]


def shorten(name):
    name = name.replace("mnist::cuda::", "").replace("(anonymous namespace)::", "").replace("dense_impl::", "")
    name = re.sub(r"\(GemmPrecision\)0", "FP32", name)
    name = re.sub(r"\(GemmPrecision\)1", "TF32", name)
    name = re.sub(r"\(GemmPrecision\)2", "BF16", name)
    name = re.sub(r"\(Kind\)0", "Forward", name)
    name = re.sub(r"\(Kind\)1", "Data", name)
    name = re.sub(r"\(Kind\)2", "Weight", name)
    name = re.sub(r"^void ", "", name)
    return name[: name.rfind("(")] if name.endswith(")") else name


def loops_of(ins, labels):
    loops = []
    for a, t, _ in ins:
        if opcode(t).startswith("BRA"):
            m = re.search(r"\.L_x_(\d+)", t)
            if m and m.group(1) in labels and labels[m.group(1)] <= a:
                loops.append((labels[m.group(1)], a))
    return sorted(set(loops))


def is_innermost(loop, loops):
    """No other loop of `loops` lies inside `loop` (start, end)."""
    s, e = loop
    return not any(s <= s2 and e2 <= e and (s2, e2) != (s, e) for s2, e2 in loops)


def is_plain_generic(text):
    """A generic load or store (LD/ST: address space unknown to the compiler) that is not .STRONG (the
    spin-waits' acquire polls: cooperative groups' grid sync, kernels/dep_wait.cuh)."""
    return re.match(r"(LD|ST)(\.|$)", opcode(text)) is not None and ".STRONG" not in text


def lines_span(items):
    lines = collections.Counter(w for _, _, w in items if w)
    if not lines:
        return ""
    files = collections.defaultdict(list)
    for (f, ln), n in lines.items():
        files[f].append(ln)
    main = max(files, key=lambda f: len(files[f]))
    ls = sorted(files[main])
    return f"{main}:{ls[0]}-{ls[-1]}"


def is_division(ins, i):
    return opcode(ins[i][1]) == "I2F.RP" or (opcode(ins[i][1]) == "MUFU.RCP" and i > 0 and "I2F.RP" in ins[i - 1][1])


REG = re.compile(r"\bR(\d+)\b")


def operations(ins, lo=None, hi=None):
    """(opcode, operands) of each instruction in [lo, hi] (all without a range), predicate dropped."""
    for a, t, _ in ins:
        if lo is not None and not lo <= a <= hi:
            continue
        op = opcode(t)
        body = re.sub(r"^@!?U?P[0-9T]+\s+", "", t)
        yield op, body[len(op):].split(",")


def serial_loads(ins, lo=None, hi=None):
    """Global loads that wait for an earlier one: an LDG issued after a global store (STG) that
    consumed, possibly through other instructions, the previous LDG's result. The compiler keeps a
    load behind a store it cannot prove distinct (no __restrict__, a generic pointer), so each such
    load is one more global-memory round trip in sequence: an epilogue whose element i loads,
    computes and stores before element i+1 loads. A barrier ends the chain. Approximate (register
    names, straight-line order), but it reads the order ptxas chose, which is what the SM runs."""
    n, live, stored = 0, set(), False
    for op, operands in operations(ins, lo, hi):
        if op.startswith("LDG"):
            if stored:
                n += 1
            m = REG.search(operands[0]) if operands else None
            live, stored = ({m.group(1)} if m else set()), False
            continue
        if op.startswith(("BAR", "EXIT", "RET")):
            live, stored = set(), False
            continue
        if not live:
            continue
        srcs = set(REG.findall(",".join(operands if op.startswith(("ST", "RED", "ATOM")) else operands[1:])))
        if srcs & live:
            if op.startswith("STG"):
                stored = True
            elif operands:
                m = REG.search(operands[0])
                if m:
                    live.add(m.group(1))
    return n


def load_regs(op, operand):
    """The registers an LDG writes: its destination and, for .64 / .128, the ones after it."""
    m = REG.search(operand)
    if not m:
        return set()
    width = 4 if ".128" in op else 2 if ".64" in op else 1
    return {str(int(m.group(1)) + i) for i in range(width)}


def waited_loads(ins, lo=None, hi=None):
    """Global loads issued after the warp has waited for the one before: an LDG such that the result
    of the LDG before it was read (by any instruction, its own address included) between the two.
    The warp stalls at that read until the earlier load returns, so the two are round trips in
    sequence instead of together: a load, then its conversion (I2F, a rounding) before the next
    load, in an unrolled loop that was meant to have all its loads in flight at once (the fused
    kernel's tile_chain until the seventeenth session: 26 a slice at TF32). One count per iteration
    of a loop whose loads are all issued before they are used (the last load of an iteration is
    read before the first of the next); an index load followed by the load it addresses counts,
    being a true chain. A barrier ends the chain. Approximate (register names, straight-line order)."""
    n, prev, waited = 0, set(), False
    for op, operands in operations(ins, lo, hi):
        if op.startswith(("BAR", "EXIT", "RET")):
            prev, waited = set(), False
            continue
        reads = set(REG.findall(",".join(operands if op.startswith(("ST", "RED", "ATOM")) else operands[1:])))
        if op.startswith("LDG"):
            if prev and (waited or reads & prev):
                n += 1
            prev, waited = load_regs(op, operands[0]) if operands else set(), False
            continue
        if prev and reads & prev:
            waited = True
    return n


def summary(kernels, pattern):
    """One line a kernel: instructions, local-memory and plain generic instructions, and its GEMM loop
    (the innermost loop with the most FFMA, an mma counting 32): its size, math share and, where it
    has mma, instructions per mma."""
    names = demangle([k[0] for k in kernels])
    print(f"{'instr':>6} {'local':>5} {'gen':>4} {'ser':>4} {'wait':>4}  {'loop':>5} {'math%':>5} {'/mma':>5}  kernel")
    for (_, ins, labels), name in zip(kernels, names):
        if pattern and not re.search(pattern, name):
            continue
        local = sum(1 for _, t, _ in ins if opcode(t).startswith(("LDL", "STL")))
        generic = sum(1 for _, t, _ in ins if is_plain_generic(t))
        loops = loops_of(ins, labels)
        best = None
        for s, e in loops:
            if not is_innermost((s, e), loops):
                continue
            body = [t for a, t, _ in ins if s <= a <= e]
            math = sum(1 for t in body if opcode(t).startswith(MATH))
            mma = sum(1 for t in body if opcode(t).startswith(("HMMA", "HGMMA")))
            weight = sum(1 for t in body if opcode(t) == "FFMA") + 32 * mma  # the GEMM loop: FFMA or mma
            if weight and (best is None or weight > best[3]):
                best = (len(body), 100 * math / len(body), len(body) / mma if mma else 0.0, weight)
        lp = f"{best[0]:5d} {best[1]:5.0f} {best[2]:5.1f}" if best else f"{'-':>5} {'-':>5} {'-':>5}"
        print(f"{len(ins):6d} {local:5d} {generic:4d} {serial_loads(ins):4d} {waited_loads(ins):4d}  {lp}  {name}")


def report(kernels, pattern, min_loop, dump):
    names = demangle([k[0] for k in kernels])
    for (mangled, ins, labels), name in zip(kernels, names):
        if pattern and not re.search(pattern, name):
            continue
        ops = collections.Counter(opcode(t) for _, t, _ in ins)
        local = sum(n for o, n in ops.items() if o.startswith(("LDL", "STL")))
        print(f"== {name}")
        print(f"   {len(ins)} instructions; local memory {local}; serial global loads {serial_loads(ins)}; "
              f"loads after a wait {waited_loads(ins)}; "
              + ", ".join(f"{o} {ops[o]}" for o in ("FFMA", "HMMA.1688.F32.TF32", "HMMA.16816.F32.BF16") if ops[o])
              + ("; HGMMA " + str(sum(n for o, n in ops.items() if o.startswith("HGMMA"))) if any(o.startswith("HGMMA") for o in ops) else ""))
        loops = loops_of(ins, labels)
        for s, e in loops:
            body = [x for x in ins if s <= x[0] <= e]
            if len(body) < min_loop:
                continue
            inner = is_innermost((s, e), loops)
            c = collections.Counter(opcode(t) for _, t, _ in body)
            math = sum(n for o, n in c.items() if o.startswith(MATH))
            mem = lambda pre: sum(n for o, n in c.items() if o.startswith(pre))
            flags = []
            divs = sum(1 for i, x in enumerate(ins) if s <= x[0] <= e and opcode(x[1]) == "I2F.RP")
            if divs:
                flags.append(f"{divs} integer division(s)")
            if mem(("LDL", "STL")):
                flags.append(f"{mem(('LDL', 'STL'))} local-memory")
            generic = sum(n for o, n in c.items() if o.startswith(("LD.", "ST.")) or o in ("LD", "ST"))
            if generic:
                flags.append(f"{generic} generic (address space unknown to the compiler)")
            ser = serial_loads(ins, s, e)
            if ser:
                flags.append(f"{ser} global load(s) behind a store (one round trip each, in sequence)")
            wait = waited_loads(ins, s, e)
            if wait:
                flags.append(f"{wait} global load(s) after a wait on the load before")
            print(f"   loop {s:#x}-{e:#x}{' innermost' if inner else ''}: {len(body)} instr, math {math} "
                  f"({100 * math / len(body):.0f} %), LDS {mem('LDS')} STS {mem('STS')} LDG {mem('LDG')} STG {mem('STG')} "
                  f"LDSM {mem('LDSM')} BAR {mem('BAR')} [{lines_span(body)}]"
                  + (" FLAG: " + ", ".join(flags) if flags else ""))
            print("      " + ", ".join(f"{o} {n}" for o, n in c.most_common(10)))
        if dump:
            lo, hi = (int(x, 16) for x in dump.split("-"))
            last = None
            for a, t, w in ins:
                if lo <= a <= hi:
                    tag = f"{w[0]}:{w[1]}" if w and w != last else ""
                    last = w
                    print(f"   {a:6x}  {t:<60} {tag}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("source", nargs="?", help="a .cu file (kernels/*.cu)")
    ap.add_argument("--fetch", action="store_true", help="put nvdisasm into ~/.cache/mnist_cuda/sass-tools")
    ap.add_argument("--have-nvdisasm", action="store_true", help="exit 0 if nvdisasm is found, else 1")
    ap.add_argument("-k", "--kernel", help="regex on the demangled kernel name")
    ap.add_argument("--arch", help="default sm_90a for dense*.cu (wgmma), sm_90 otherwise")
    ap.add_argument("--min-loop", type=int, default=8, help="loops shorter than this are not listed")
    ap.add_argument("--dump", help="ADDR-ADDR (hex): print the instructions there, with their source lines")
    ap.add_argument("--sass", help="also write the whole disassembly here")
    ap.add_argument("--summary", action="store_true", help="one line a kernel instead of its loops")
    ap.add_argument("--build", help="a build directory: read the machine code of its object of the source (not older "
                    "than the source) instead of compiling it (seconds rather than up to a minute a dense*.cu)")
    a = ap.parse_args()
    if a.have_nvdisasm:
        sys.exit(0 if find_nvdisasm() else 1)
    if a.fetch:
        fetch()
        if not a.source:
            return
    if not a.source:
        ap.error("a source file is needed")
    nvdisasm = find_nvdisasm()
    if not nvdisasm:
        sys.exit("sass.py: no nvdisasm (run profiling/sass.py --fetch, or set MNIST_NVDISASM)")
    arch = a.arch or arch_of(a.source)
    with tempfile.TemporaryDirectory() as tmp:
        cubin = os.path.join(tmp, "k.cubin")
        obj = build_object(a.build, a.source) if a.build and not a.arch else None
        if obj and cubin_from_object(obj, cubin):
            print(f"(the machine code of {obj})", file=sys.stderr)
        else:
            if a.build:
                print(f"(no current object of {a.source} under {a.build}: compiled)", file=sys.stderr)
            compile_cubin(a.source, arch, cubin)
        text = disassemble(nvdisasm, cubin)
    if a.sass:
        open(a.sass, "w").write(text)
    if a.summary:
        summary(parse(text), a.kernel)
    else:
        report(parse(text), a.kernel, a.min_loop, a.dump)


if __name__ == "__main__":
    main()
