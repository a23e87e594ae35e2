import re, sys
def split_top(s):
    parts, d, cur = [], 0, ''
    for c in s:
        if c in '([{<': d += 1
        elif c in ')]}>': d -= 1
        if c == ',' and d == 0: parts.append(cur.strip()); cur = ''
        else: cur += c
    parts.append(cur.strip()); return parts
src = open(sys.argv[1]).read()
import os, zlib
file_id = zlib.crc32(os.path.basename(sys.argv[1]).encode()) % 20000 * 100000
# emu::dynamic_shared, emu::launch_dynamic and cudaFuncSetAttribute live in ov/cooperative_groups.h
# Lines put before the source go in `head`; a #line directive after them, and the launches rewritten
# below keep their line count, so the compiler (and addr2line, banks.cpp) names the source's own lines.
head = ''
if 'extern __shared__' in src and '#include <cooperative_groups.h>' not in src:
    head = '#include <cooperative_groups.h>\n' + head
# --fma: compile the kernel as nvcc does by default (--fmad=true): a*b + c contracted into one
# fused multiply-add, also across statements (see README.md for where the choice can differ).
# (Not in a header, kernels/dense_impl.cuh: the source that includes it has them first, and the
# pragmas again after its standard headers would redeclare those differently.)
if '--fma' in sys.argv[3:] and not sys.argv[1].endswith('.cuh'):
    head = '#pragma GCC target("fma")\n#pragma GCC optimize("fp-contract=fast")\n' + head
src = re.sub(r'#include <cub/[^>]*>\n', '\n', src)
# dynamic shared memory: the launch's per-block buffer (ov/cooperative_groups.h)
src = re.sub(r'extern __shared__ (\w+) (\w+)\[\];', r'\1* \2 = emu::dynamic_shared<\1>();', src)
# static shared objects (one per file and line: file_id): placed only as aligned as their type demands (ov/cuda_runtime.h, shared_obj)
src = re.sub(r'(?<!extern )__shared__ ((?:typename )?(?:(?:unsigned|signed|long|short) )*[\w:<>]+) (\w+)((?:\[[^\]]+\])*);',
             lambda m: f'auto& {m.group(2)} = emu::shared_obj<{m.group(1)}{m.group(3)}, {file_id} + __LINE__>();', src)
# Any other form (two declarators in one statement, an initializer) would be left as it is and run
# as one static object for every block of the process: the blocks that run at once would race on it,
# and the results depend on the schedule. Refused: one declarator a statement.
left = re.search(r'(?<!extern )(?<!// )__shared__ [^;]*;', re.sub(r'//[^\n]*', '', src))
if left:
    sys.exit(f'transform.py: {sys.argv[1]}: a __shared__ declaration it cannot rewrite (one declarator a statement, '
             f'no initializer): {left.group(0)!r}')
out, i = '', 0
while True:
    j = src.find('<<<', i)
    if j < 0: out += src[i:]; break
    # kernel name start: walk back to beginning of statement (after ';' '{' '}' or newline indentation)
    k = j
    while src[k-1] not in ';{}\n': k -= 1
    # keep leading whitespace
    stmt_start = k
    while src[stmt_start] in ' \t': stmt_start += 1
    name = src[stmt_start:j]
    e = src.index('>>>', j)
    cfg = split_top(src[j+3:e])
    # args: balanced parens after >>>
    a0 = e + 3; assert src[a0] == '('
    d, p = 0, a0
    while True:
        if src[p] == '(': d += 1
        elif src[p] == ')':
            d -= 1
            if d == 0: break
        p += 1
    args = src[a0+1:p]
    semi = src.index(';', p)
    if len(cfg) >= 3 and 'emu::dynamic_shared' in src:
        call = 'emu::launch_dynamic(dim3(%s), unsigned(%s), std::size_t(%s), emu::kernel_key(%s), [&] { %s(%s); });' % (cfg[0], cfg[1], cfg[2], name, name, args)
    else:
        call = 'emu::launch(dim3(%s), unsigned(%s), [&] { %s(%s); }, emu::kernel_key(%s));' % (cfg[0], cfg[1], name, args, name)
    out += src[i:stmt_start] + call + '\n' * (src[stmt_start:semi + 1].count('\n') - call.count('\n'))
    i = semi + 1
out = head + '#line 1 "%s"\n' % os.path.abspath(sys.argv[1]) + out
open(sys.argv[2], 'w').write(out)
