#!/usr/bin/env python3
"""A strict checker of the Prometheus text exposition format (0.0.4).

prom-check.py FILE            checks FILE, exit 1 with the first fault
prom-check.py FILE SAMPLE...  checks, then prints each SAMPLE's value,
                              e.g. 'qdesk_vms{state="running"}' (labels in
                              any order; a missing sample is a fault)

Beyond the grammar it holds the conventions qdesk promises: HELP and TYPE
before a family's samples, each once; a family's samples together;
counters named _total; histograms with cumulative buckets, a +Inf bucket
equal to _count, and _sum; no sample twice.
"""
import math
import re
import sys

NAME = re.compile(r'[a-zA-Z_:][a-zA-Z0-9_:]*')
LABEL = re.compile(r'[a-zA-Z_][a-zA-Z0-9_]*')
TYPES = ('counter', 'gauge', 'histogram', 'summary', 'untyped')


class Fault(Exception):
    pass


def value(text, where):
    if text in ('+Inf', 'Inf'):
        return math.inf
    if text == '-Inf':
        return -math.inf
    if text == 'NaN':
        return math.nan
    if not re.fullmatch(r'[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?', text):
        raise Fault(f'{where}: bad value {text!r}')
    return float(text)


def labels(s, i, where):
    """Parse {a="b",...} from s[i] == '{'; return (dict, next index)."""
    out = {}
    i += 1
    while True:
        if s[i] == '}':
            return out, i + 1
        m = LABEL.match(s, i)
        if not m:
            raise Fault(f'{where}: bad label name at {s[i:i+20]!r}')
        name = m.group(0)
        i = m.end()
        if s[i:i+2] != '="':
            raise Fault(f'{where}: label {name} without ="')
        i += 2
        v = []
        while s[i] != '"':
            if s[i] == '\\':
                esc = s[i+1]
                if esc not in '\\"n':
                    raise Fault(f'{where}: bad escape \\{esc}')
                v.append('\n' if esc == 'n' else esc)
                i += 2
            elif s[i] == '\n':
                raise Fault(f'{where}: newline in a label value')
            else:
                v.append(s[i])
                i += 1
        i += 1
        if name in out:
            raise Fault(f'{where}: label {name} twice')
        out[name] = ''.join(v)
        if s[i] == ',':
            i += 1
        elif s[i] != '}':
            raise Fault(f'{where}: want , or }} after label {name}')


def family_of(name, types):
    for suffix in ('_bucket', '_sum', '_count'):
        base = name[:-len(suffix)]
        if name.endswith(suffix) and types.get(base) in ('histogram',
                                                          'summary'):
            return base
    return name


def check(text):
    if text and not text.endswith('\n'):
        raise Fault('the text does not end with a newline')
    types, helps, samples, done = {}, {}, {}, set()
    current = None
    for n, line in enumerate(text.split('\n')[:-1], 1):
        where = f'line {n}'
        if line == '':
            continue
        if line.startswith('#'):
            parts = line.split(' ', 3)
            if len(parts) >= 3 and parts[1] in ('HELP', 'TYPE'):
                name = parts[2]
                if not NAME.fullmatch(name):
                    raise Fault(f'{where}: bad metric name {name!r}')
                table = helps if parts[1] == 'HELP' else types
                if name in table:
                    raise Fault(f'{where}: second {parts[1]} for {name}')
                if name in done or (current != name and name in samples):
                    raise Fault(f'{where}: {parts[1]} of {name} after '
                                'its samples')
                if parts[1] == 'TYPE':
                    if len(parts) != 4 or parts[3] not in TYPES:
                        raise Fault(f'{where}: bad TYPE line')
                    if parts[3] == 'counter' and \
                            not name.endswith('_total'):
                        raise Fault(f'{where}: counter {name} lacks _total')
                    types[name] = parts[3]
                else:
                    helps[name] = parts[3] if len(parts) == 4 else ''
                continue
            continue
        m = NAME.match(line)
        if not m:
            raise Fault(f'{where}: bad sample {line[:40]!r}')
        name = m.group(0)
        i = m.end()
        lab = {}
        if i < len(line) and line[i] == '{':
            try:
                lab, i = labels(line + '\n', i, where)
            except IndexError:
                raise Fault(f'{where}: unterminated labels')
        rest = line[i:]
        if not rest.startswith(' '):
            raise Fault(f'{where}: want a space before the value')
        fields = rest.split()
        if len(fields) not in (1, 2):
            raise Fault(f'{where}: want a value and maybe a timestamp')
        v = value(fields[0], where)
        if len(fields) == 2 and not re.fullmatch(r'-?\d+', fields[1]):
            raise Fault(f'{where}: bad timestamp')
        fam = family_of(name, types)
        if fam not in types:
            raise Fault(f'{where}: {name} has no TYPE line before it')
        if fam not in helps:
            raise Fault(f'{where}: {name} has no HELP line before it')
        if fam != current:
            if fam in done:
                raise Fault(f'{where}: samples of {fam} are not together')
            if current is not None:
                done.add(current)
            current = fam
        if types[fam] == 'counter' and (v < 0 or math.isnan(v)):
            raise Fault(f'{where}: counter {name} is {v}')
        key = (name, tuple(sorted(lab.items())))
        if key in samples:
            raise Fault(f'{where}: sample {name}{lab} twice')
        samples[key] = v
    for fam, t in types.items():
        if t != 'histogram':
            continue
        groups = {}
        for (name, lab), v in samples.items():
            if name == fam + '_bucket':
                d = dict(lab)
                if 'le' not in d:
                    raise Fault(f'{name} without le')
                le = value(d.pop('le'), name)
                groups.setdefault(tuple(sorted(d.items())), []).append(
                    (le, v))
        for rest, buckets in groups.items():
            buckets.sort()
            if buckets[-1][0] != math.inf:
                raise Fault(f'{fam}: no +Inf bucket')
            for a, b in zip(buckets, buckets[1:]):
                if b[1] < a[1]:
                    raise Fault(f'{fam}: buckets not cumulative')
            count = samples.get((fam + '_count', rest))
            if count is None or (fam + '_sum', rest) not in samples:
                raise Fault(f'{fam}: _count or _sum missing')
            if count != buckets[-1][1]:
                raise Fault(f'{fam}: +Inf bucket {buckets[-1][1]} is not '
                            f'_count {count}')
    return samples


def query(samples, q):
    m = NAME.match(q)
    lab = {}
    if m.end() < len(q):
        lab, _ = labels(q + '\n', m.end(), q)
    key = (m.group(0), tuple(sorted(lab.items())))
    if key not in samples:
        raise Fault(f'no sample {q}')
    v = samples[key]
    return str(int(v)) if v == int(v) else repr(v)


def main():
    if len(sys.argv) < 2:
        print(__doc__.strip().split('\n\n')[1], file=sys.stderr)
        sys.exit(2)
    try:
        with open(sys.argv[1], encoding='utf-8') as f:
            samples = check(f.read())
        for q in sys.argv[2:]:
            print(query(samples, q))
    except Fault as e:
        print(f'{sys.argv[1]}: {e}', file=sys.stderr)
        sys.exit(1)


if __name__ == '__main__':
    main()
