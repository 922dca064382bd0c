"""Compact held-out table from an experiment's results.csv (README "Converged ablation rows"):
mean ± std per method and seed-by-seed differences. Usage: python tools/heldout_table.py CSV"""
import csv, collections, math, sys
rows = list(csv.DictReader(open(sys.argv[1])))
d = collections.defaultdict(dict)
for r in rows:
    if r['split'].startswith('heldout'):
        d[(r['method'], r['split'])][int(r['seed'])] = 100 * float(r['AP'])
def ms(v):
    v = list(v); m = sum(v) / len(v)
    s = math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1)) if len(v) > 1 else 0
    return m, s
order = ['teacher_pt', 'teacher_st', 'scratch', 'odkd', 'odkd_no_seg', 'odkd_no_bin']
print('| method | seeds | heldout_val AP | heldout_occluded AP |\n|---|---|---|---|')
for m in order:
    if (m, 'heldout_val') not in d: continue
    a = d[(m, 'heldout_val')]; b = d[(m, 'heldout_occluded')]
    (ma, sa), (mb, sb) = ms(a.values()), ms(b.values())
    print(f'| {m} | {len(a)} | {ma:.1f} ± {sa:.1f} | {mb:.1f} ± {sb:.1f} |')
print()
print('| comparison | heldout_val per seed | mean | spread | heldout_occluded per seed | mean | spread |\n|---|---|---|---|---|---|---|')
for a_, b_ in [('odkd', 'scratch'), ('odkd_no_seg', 'scratch'), ('odkd_no_bin', 'scratch'), ('odkd', 'odkd_no_seg'), ('odkd', 'odkd_no_bin')]:
    cells = []
    for sp in ('heldout_val', 'heldout_occluded'):
        A, B = d[(a_, sp)], d[(b_, sp)]
        seeds = sorted(set(A) & set(B))
        diffs = [A[s] - B[s] for s in seeds]
        spread = max(ms([A[s] for s in seeds])[1], ms([B[s] for s in seeds])[1])
        cells += [' / '.join(f'{x:+.1f}' for x in diffs), f'{sum(diffs)/len(diffs):+.1f}', f'{spread:.1f}']
    print(f'| {a_} − {b_} | ' + ' | '.join(cells) + ' |')
