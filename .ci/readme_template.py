#!/usr/bin/env python3
"""Checks that the README's freestanding recipe is templates/freestanding/
exactly: each `<!-- template: PATH -->` line is followed by a fenced block
holding the file PATH of the template, and every file of the template is
shown.  Exits 1 with a diff otherwise."""
import difflib, os, re, sys

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..')
template = os.path.join(root, 'templates', 'freestanding')
readme = open(os.path.join(root, 'README.md')).read()

shown = {}
for m in re.finditer(r'<!-- template: (\S+) -->\n```[^\n]*\n(.*?)^```$', readme, re.S | re.M):
    shown[m.group(1)] = m.group(2)

files = set()
for dirpath, dirnames, names in os.walk(template):
    dirnames[:] = [d for d in dirnames if d != 'target']
    for name in names:
        if name != 'Cargo.lock':
            files.add(os.path.relpath(os.path.join(dirpath, name), template))

bad = False
for path in sorted(files | set(shown)):
    if path not in shown:
        print(f'README.md does not show templates/freestanding/{path}'); bad = True
    elif path not in files:
        print(f'README.md shows {path}, which templates/freestanding/ does not have'); bad = True
    else:
        want = open(os.path.join(template, path)).read()
        if shown[path] != want:
            bad = True
            sys.stdout.writelines(difflib.unified_diff(
                want.splitlines(True), shown[path].splitlines(True),
                f'templates/freestanding/{path}', f'README.md: {path}'))
if bad:
    sys.exit(1)
print(f'README.md shows templates/freestanding/ as it is ({len(files)} files)')
