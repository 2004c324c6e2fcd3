#!/usr/bin/env python3
"""Checks sud's layering: the `use crate::...` (and `super::`) edges between
the files of src/ form no loop, src/asm.rs is imported by nobody, and no
file of src/ is over 600 lines.  Prints the file graph; exits 1 on a loop."""
import os, re, sys

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'src')
files = {}
for dirpath, _, names in os.walk(root):
    for name in names:
        if name.endswith('.rs'):
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            mod = rel[:-3].replace(os.sep, '::')
            mod = re.sub(r'(^|::)mod$', '', mod) or 'lib'
            if mod == 'lib':
                mod = 'crate'
            else:
                mod = 'crate::' + mod
            files[mod] = path

def resolve(mod, path):
    """The file a `crate::a::b::c` path lands in: the longest module prefix."""
    parts = path.split('::')
    for n in range(len(parts), 0, -1):
        cand = '::'.join(parts[:n])
        if cand in files and cand != 'crate':
            return cand
    return None

edges = {m: set() for m in files}
for mod, path in files.items():
    text = open(path).read()
    # strip comments
    text = re.sub(r'//[^\n]*', '', text)
    parent = mod.rsplit('::', 1)[0] if mod != 'crate' else 'crate'
    for m in re.finditer(r'\b(crate|super)((?:::\w+)+)', text):
        base, rest = m.group(1), m.group(2)
        if base == 'super':
            full = parent + rest
        else:
            full = 'crate' + rest
        target = resolve(mod, full)
        if target is None and base == 'crate':
            target = 'crate'  # a re-export of lib.rs: that is an edge to it
        if target and target != mod:
            edges[mod].add(target)
    # Paths relative to this module: its own submodules (`use state::X`).
    for m in re.finditer(r'(?<![:\w])(\w+)::', text):
        if m.group(1) in ('crate', 'super', 'self', 'core', 'std'):
            continue
        target = mod + '::' + m.group(1)
        if target in files:
            edges[mod].add(target)

bad = False
lines = {m: sum(1 for _ in open(p)) for m, p in files.items()}
for m, n in sorted(lines.items()):
    if n > 600:
        print(f'too long: {files[m]} has {n} lines'); bad = True
for m in files:
    if 'crate::asm' in edges[m]:
        print(f'{m} imports crate::asm'); bad = True

# cycle detection
state = {}
stack = []
def visit(m):
    global bad
    state[m] = 1; stack.append(m)
    for t in sorted(edges[m]):
        if state.get(t) == 1:
            print('loop: ' + ' -> '.join(stack[stack.index(t):] + [t])); bad = True
        elif t not in state:
            visit(t)
    stack.pop(); state[m] = 2
for m in sorted(files):
    if m not in state:
        visit(m)
if '-v' in sys.argv:
    for m in sorted(files):
        print(f'{m:40} {lines[m]:4}  -> {", ".join(sorted(t.replace("crate::", "") for t in edges[m]))}')
print('layers: ' + ('FAILED' if bad else f'ok ({len(files)} files, no loop, none over 600 lines)'))
sys.exit(1 if bad else 0)
