import type { Violations } from "../errors.ts";

// Permission codenames are `{microservice}.{resource}.{action}`; a grant or an
// elected pattern may use `*` for a whole segment (never inside one).

const SEGMENT = /^[a-z][a-z0-9_-]*$/;
// A microservice name may itself contain dots (`^[a-z][a-z0-9.-]*$`), so a
// codename is "<name>.<resource>.<action>" with the last two segments fixed.
export const CODENAME = /^[a-z][a-z0-9.-]*\.[a-z][a-z0-9_-]*\.[a-z][a-z0-9_-]*$/;

function split(value: string): [string, string, string] | undefined {
  const last = value.lastIndexOf(".");
  const mid = value.lastIndexOf(".", last - 1);
  if (mid <= 0) return undefined;
  return [value.slice(0, mid), value.slice(mid + 1, last), value.slice(last + 1)];
}

/** True for a codename or a pattern with `*` segments, e.g. `identity.*.*`. */
export function isPermissionPattern(value: string): boolean {
  if (value.length > 200) return false;
  const parts = split(value);
  if (!parts) return false;
  const [service, resource, action] = parts;
  return (
    (service === "*" || /^[a-z][a-z0-9.-]*$/.test(service)) &&
    (resource === "*" || SEGMENT.test(resource)) &&
    (action === "*" || SEGMENT.test(action))
  );
}

/**
 * Validates a list of permission patterns into `v`: over `max` entries is one
 * violation (the entries are not looked at), otherwise one per bad entry until
 * `v` is full.
 */
export function checkPatternList(patterns: readonly string[], max: number, field: string, v: Violations): void {
  if (patterns.length > max) {
    v.add(field, `must have at most ${max} entries`);
    return;
  }
  for (let i = 0; i < patterns.length && !v.full; i++) {
    if (!isPermissionPattern(patterns[i]!)) v.add(`${field}[${i}]`, "must be {microservice}.{resource}.{action}, `*` allowed per segment");
  }
}

/** Does `pattern` (with optional `*` segments) cover `codename`? */
export function patternMatches(pattern: string, codename: string): boolean {
  if (pattern === codename) return true;
  const p = split(pattern);
  const c = split(codename);
  if (!p || !c) return false;
  return p.every((segment, i) => segment === "*" || segment === c[i]);
}

/** Does any of `patterns` cover `codename`? */
export function anyPatternMatches(patterns: Iterable<string>, codename: string): boolean {
  for (const pattern of patterns) if (patternMatches(pattern, codename)) return true;
  return false;
}

/**
 * The patterns covering exactly the codenames covered by both sets: the
 * segment-wise meet of every pair (`*` yields to the other side's literal).
 * Used for "granted now ∩ elected".
 */
export function intersectPatterns(a: readonly string[], b: readonly string[]): string[] {
  const out = new Set<string>();
  for (const x of a) {
    const xs = split(x);
    if (!xs) continue;
    for (const y of b) {
      const ys = split(y);
      if (!ys) continue;
      const meet: string[] = [];
      for (let i = 0; i < 3; i++) {
        if (xs[i] === ys[i] || ys[i] === "*") meet.push(xs[i]!);
        else if (xs[i] === "*") meet.push(ys[i]!);
        else break;
      }
      if (meet.length === 3) out.add(meet.join("."));
    }
  }
  return withoutRedundant(out);
}

/** The patterns, sorted, without those another one of them already covers. */
export function withoutRedundant(patterns: Iterable<string>): string[] {
  const all = [...new Set(patterns)];
  return all.filter((p) => !all.some((q) => q !== p && patternMatches(q, p))).sort();
}
